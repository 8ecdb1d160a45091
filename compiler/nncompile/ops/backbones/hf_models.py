"""`transformers.AutoModel` (or a model class, `transformers.BertModel`) with `model:` a Hugging
Face model id or a local folder: any text or vision encoder transformers can load, as a backbone.

Offline by construction: the model's config is read at compile time (a local folder, or the
Hugging Face cache, never the network) and written into the generated file as plain values, so
`pretrained=False` builds the same architecture with no cache; `pretrained=True` calls
`from_pretrained` with that config. The spec's inputs reach forward() by name (`input_ids`,
`attention_mask`, `token_type_ids`, `pixel_values`); `output:` picks a field of the model's
output, a hidden state (`hidden_states.N`) or the first token (`cls`).

transformers is optional: it is imported only when a spec uses it.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass

from ...errors import SpecError, did_you_mean, first_line
from ...pyfmt import Arg, Call, Input, UnsafeValue, docstring_text, identifier, literal
from ..base import (
    Built,
    TensorInfo,
    WeightsInput,
    expect_arity,
    fake_meta,
    import_optional,
    op_failed,
    reject_unknown,
)
from .surgery import build_meta

KEYS = ("model", "weights", "output")
# config entries that say where the config came from, not what the model is; `dtype` is left
# out so both builds are float32 (from_pretrained is given dtype=torch.float32 explicitly)
PROVENANCE = ("transformers_version", "architectures", "model_type", "dtype", "torch_dtype")
FOLDER_HINT = "a folder written by save_pretrained(); relative paths are read from the folder you compile in"
INTEGER_INPUTS = "input_ids, attention_mask and token_type_ids"

FROM_PRETRAINED = '''\
def _from_pretrained(cls, name: str, config, folder: bool = False, **options):
    """`cls` with the architecture of `config` and the pretrained weights of `name` (a local
    `folder`, or a Hugging Face model id: downloaded once into the Hugging Face cache);
    `options` go to the model class (add_pooling_layer=False)."""
    if folder and not os.path.isdir(name):  # transformers would take it for a model id
        raise FileNotFoundError(
            f"no folder {name!r} with the pretrained weights: name a folder written by"
            " save_pretrained(), or build the model with pretrained=False"
        )
    model = cls.from_pretrained(name, config=config, dtype=torch.float32, **options)
    return model.train()  # from_pretrained leaves it in eval mode
'''


def is_local(name: str) -> bool:
    """A local folder, as transformers decides: an existing directory, or a path by its form."""
    return os.path.isdir(name) or name.startswith(("/", "./", "../", "~"))


@dataclass
class HFModel:
    cls_name: str  # AutoModel, or a model class of transformers (BertModel)

    def build(self, node, inputs: list[TensorInfo], sources: list[str]) -> Built:
        transformers = import_optional(node, "transformers")
        reject_unknown(node, KEYS, node.op)
        expect_arity(node, inputs, 1, -1)
        cls = self.model_class(node, transformers)
        name = self.model_name(node)
        full_config = self.read_config(node, transformers, name)
        auto = self.cls_name.startswith("Auto")
        output = node.params.get("output", "last_hidden_state")
        hidden = isinstance(output, str) and output.startswith("hidden_states.")
        model = self.meta_model(cls, auto, full_config, {})
        kwargs = self.wire(node, model, sources)
        feeds = dict(zip(kwargs, inputs, strict=True))
        try:
            result = self.meta_forward(model, feeds, hidden)
        except Exception as exc:  # noqa: BLE001 - reported at the node with the incoming shapes
            integer = [k for k in kwargs if k in ("input_ids", "attention_mask", "token_type_ids")]
            hint = (
                f"{INTEGER_INPUTS} are integer tensors: give the spec input `dtype: int64`"
                if integer
                else None
            )
            raise op_failed(node, exc, inputs, sources, hint=hint) from None
        _, tensor = self.pick(node, result, output)
        if hidden:  # the index from the front: the same state once the layers above are cut
            output = f"hidden_states.{int(output.partition('.')[2]) % len(result['hidden_states'])}"
        config, options, model, result = self.used_build(cls, auto, full_config, output, model, feeds, result)
        suffix, tensor = self.pick(node, result, output)
        built = Built(init=[], call="", out=None, imports={"import transformers"})
        self.construct(node, built, transformers, full_config, config, options, output)
        if built.uses_pretrained and "pixel_values" in kwargs:
            built.weights_input = image_processor_input(self.weights(node, name))
        built.module = model
        built.unused = self.unused(model, feeds, output)
        args = [Arg(k, Input(i)) for i, k in enumerate(kwargs)]
        args += [Arg("output_hidden_states", "True")] if hidden else []
        built.call = Call(f"self.{node.id}", tuple(args), suffix=suffix)
        built.out = TensorInfo.of(tensor)
        return built

    def construct(
        self, node, built: Built, transformers, full_config, config, options: dict, output: str
    ) -> None:
        """The `__init__` statements that build the model (from its config, or with its weights)
        and the header's notes; `config` and `options` leave out what `output` does not read."""
        name = node.params["model"]
        auto = self.cls_name.startswith("Auto")
        config_call = self.config_code(node, transformers, config)
        weights = self.weights(node, name)
        attr, cls_code, var = f"self.{node.id}", f"transformers.{self.cls_name}", f"{node.id}_config"
        layers = getattr(full_config, "num_hidden_layers", None)
        cut = (
            f", its first {config.num_hidden_layers} of {layers} layers" if config is not full_config else ""
        )
        built.init.append(
            (
                f"{var} = ",
                config_call,
                f"the architecture of {docstring_text(name)} (its config, read at compile time){cut}",
            )
        )
        option_args = tuple(Arg(k, literal(v)) for k, v in options.items())
        left_out = f"no pooler: output {output} does not read it" if options else None
        plain = Call(f"{cls_code}.from_config" if auto else cls_code, (Arg(None, var), *option_args))
        if weights is None:
            built.init.append((f"{attr} = ", plain, left_out))
        else:
            built.uses_pretrained = True
            built.helpers["_from_pretrained"] = FROM_PRETRAINED
            built.imports |= {"import os", "import torch"}
            folder = is_local(weights)
            args = (Arg(None, cls_code), Arg(None, literal(weights)), Arg(None, var))
            loaded = Call(
                "_from_pretrained", args + ((Arg("folder", "True"),) if folder else ()) + option_args
            )
            built.init += [
                ("if pretrained:", "", None),
                (f"    {attr} = ", loaded, left_out),
                ("else:", "", None),
                (f"    {attr} = ", plain, None),
            ]
            if not folder:  # a model id: downloaded into the Hugging Face cache
                from . import download  # imports torch

                loading = len(built.init) - 3  # the from_pretrained line
                download.guard(built, literal(weights), loading, local="folder (save_pretrained)", hub=True)
            built.notes.append(f"pretrained weights from {weights} (transformers' from_pretrained)")
        built.notes += self.left_out_note(output, options, config, layers, weights is not None)

    @staticmethod
    def meta_model(cls, auto: bool, config, options: dict):
        model = build_meta(lambda: cls.from_config(config, **options) if auto else cls(config, **options))
        model.eval()  # dropout is irrelevant to shapes; eval avoids random ops on meta
        return model

    def used_build(self, cls, auto: bool, config, output: str, model, feeds, result):
        """(config, options of the model class, meta model, its meta output) building only what
        `output:` reads: without the pooler where the model class can leave it out
        (`add_pooling_layer`), and without the layers above `hidden_states.N` (the config's
        `num_hidden_layers`, at least 1: with none, transformers gives no hidden states). Each
        is kept only where the model built without it gives the same output."""
        import inspect

        options = {}
        if output != "pooler_output" and "add_pooling_layer" in inspect.signature(type(model)).parameters:
            options["add_pooling_layer"] = False
        tries = [(config, options)]
        if output.startswith("hidden_states."):
            keep = max(int(output.partition(".")[2]), 1)
            if keep < getattr(config, "num_hidden_layers", 0):
                cut = copy.deepcopy(config)
                cut.num_hidden_layers = keep
                tries.insert(0, (cut, options))
        _, tensor = self.reach(result, output)
        for config_tried, options_tried in tries:
            try:
                trimmed = self.meta_model(cls, auto, config_tried, options_tried)
                trimmed_result = self.meta_forward(trimmed, feeds, output.startswith("hidden_states."))
                _, same = self.reach(trimmed_result, output)
            except Exception:  # noqa: BLE001 - a model that cannot leave the part out keeps it
                continue
            if same.shape == tensor.shape:
                return config_tried, options_tried, trimmed, trimmed_result
        return config, {}, model, result

    @staticmethod
    def left_out_note(output: str, options: dict, config, layers, pretrained: bool) -> list[str]:
        """The header's line on the parts left out of the model, or none."""
        parts = ["pooler"] if options else []
        kept = getattr(config, "num_hidden_layers", layers)
        if kept != layers:
            parts.append(f"last {layers - kept} of its {layers} layers")
        if not parts:
            return []
        report = " (from_pretrained reports the weights left out as unexpected)" if pretrained else ""
        return [f"built without its {' and the '.join(parts)}, which output {output} does not read{report}"]

    def model_class(self, node, transformers):
        try:
            cls = getattr(transformers, identifier(self.cls_name))
        except (AttributeError, UnsafeValue):
            cls = None
        auto = self.cls_name.startswith("Auto") and hasattr(cls, "from_config")
        if not (auto or (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel))):
            raise SpecError(
                f"transformers has no model class '{self.cls_name}'",
                node.op_loc(),
                node=node.id,
                hint=did_you_mean(self.cls_name, [n for n in dir(transformers) if n.endswith("Model")])
                or "op: transformers.AutoModel (any model by its config), or a model class such as transformers.BertModel",
            )
        return cls

    @staticmethod
    def model_name(node) -> str:
        name = node.params.get("model")
        if not isinstance(name, str) or not name:
            raise SpecError(
                f"{node.op} needs `model:`, a Hugging Face model id or a local folder",
                node.param_loc("model") if "model" in node.params else node.loc,
                node=node.id,
                hint="for example `model: google-bert/bert-base-uncased` or `model: models/my_bert`",
            )
        return name

    @staticmethod
    def read_config(node, transformers, name: str):
        """The model's config from a local folder or the Hugging Face cache, never the network."""
        loc = node.param_loc("model")
        local = is_local(name)
        if local and not os.path.isfile(os.path.join(os.path.expanduser(name), "config.json")):
            raise SpecError(
                f"model folder '{name}' has no config.json",
                loc,
                node=node.id,
                hint=FOLDER_HINT,
            )
        try:
            config = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError) as exc:
            if local:
                raise SpecError(
                    f"cannot read the config of '{name}': {first_line(exc)}", loc, node=node.id
                ) from None
            from huggingface_hub import constants

            raise SpecError(
                f"model '{name}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE})",
                loc,
                node=node.id,
                hint=f"nncompile reads the config without the network: download the model once (`hf download {name}`), "
                "or name a local folder written by save_pretrained()",
            ) from None
        if getattr(config, "auto_map", None):
            raise SpecError(
                f"model '{name}' needs its own code (trust_remote_code), which nncompile does not run",
                loc,
                node=node.id,
                hint="use a model whose architecture is part of transformers",
            )
        return config

    @staticmethod
    def config_code(node, transformers, config) -> Call:
        """`transformers.BertConfig(hidden_size=32, ...)`: the entries that differ from the config
        class's defaults, checked to rebuild the same config."""
        cls = type(config)
        if getattr(transformers, cls.__name__, None) is not cls:
            raise SpecError(
                f"the config class {cls.__name__} of '{node.params['model']}' is not part of transformers",
                node.param_loc("model"),
                node=node.id,
            )
        own, defaults = config.to_dict(), cls().to_dict()
        diff = {
            k: v
            for k, v in sorted(own.items())
            if k not in PROVENANCE and not k.startswith("_") and (k not in defaults or defaults[k] != v)
        }

        def plain(c):
            kept = {k: v for k, v in c.to_dict().items() if k not in PROVENANCE and not k.startswith("_")}
            return json.dumps(kept, sort_keys=True, default=str)

        try:
            args = tuple(Arg(identifier(k), literal(v)) for k, v in diff.items())
            same = plain(cls(**diff)) == plain(config)
        except (UnsafeValue, TypeError, ValueError) as exc:
            raise SpecError(
                f"the config of '{node.params['model']}' cannot be written as plain values: {first_line(exc)}",
                node.param_loc("model"),
                node=node.id,
            ) from None
        if not same:
            raise SpecError(
                f"the config of '{node.params['model']}' does not rebuild from its values",
                node.param_loc("model"),
                node=node.id,
            )
        return Call(f"transformers.{cls.__name__}", args)

    @staticmethod
    def weights(node, name: str) -> str | None:
        """Where from_pretrained reads the weights: the model itself (DEFAULT), another local
        folder (fine-tuned weights of the same architecture), or None (random initialisation)."""
        weights = node.params.get("weights", None)
        if weights is None:
            return None
        if weights == "DEFAULT":
            return name
        if isinstance(weights, str) and is_local(weights):
            if not os.path.isdir(os.path.expanduser(weights)):
                raise SpecError(
                    f"weights folder '{weights}' does not exist",
                    node.param_loc("weights"),
                    node=node.id,
                    hint=FOLDER_HINT,
                )
            return weights
        raise SpecError(
            f"unknown weights {weights!r} for {node.op}",
            node.param_loc("weights"),
            node=node.id,
            hint="DEFAULT (the weights of `model:`), null (random initialisation), or a local folder "
            "written by save_pretrained() (a path: ./name for one in the current folder)",
        )

    @staticmethod
    def wire(node, model, sources: list[str]) -> list[str]:
        """The forward() argument each input goes to: the one named like it (attention_mask,
        token_type_ids, ...); the first input may have any name and goes to the model's main input."""
        import inspect

        params = [
            n
            for n, p in inspect.signature(model.forward).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        names = []
        for i, source in enumerate(sources):
            name = source.rpartition(".")[2]
            if name not in params:
                if i > 0:
                    raise SpecError(
                        f"input '{source}' of {node.id} names no argument of {type(model).__name__}.forward",
                        node.doc.loc("nodes", node.id, "in"),
                        node=node.id,
                        hint="inputs reach the model by name: call the spec input or node one of "
                        + ", ".join(params[:6]),
                    )
                name = model.main_input_name
            if name in names:
                raise SpecError(
                    f"two inputs of {node.id} go to the model's argument '{name}'",
                    node.doc.loc("nodes", node.id, "in"),
                    node=node.id,
                    hint="inputs reach the model by name: give each a different name",
                )
            names.append(name)
        return names

    @staticmethod
    def meta_forward(model, inputs: dict[str, TensorInfo], hidden: bool):
        """The model's output for meta inputs, made fake: transformers does not read the attention
        mask's values then (to skip it when nothing is padded), which meta tensors cannot give."""
        import torch

        with torch.no_grad(), fake_meta() as fake:
            tensors = {k: fake(v) for k, v in inputs.items()}
            return model(**tensors, **({"output_hidden_states": True} if hidden else {}))

    def unused(self, model, inputs: dict[str, TensorInfo], output: str) -> list[str]:
        """The names of the parameters of `model` no gradient of `output:` reaches (a final
        norm that only the pooler or last_hidden_state reads), followed through autograd's
        graph on fake tensors."""
        import torch

        named = dict(model.named_parameters())
        with fake_meta() as fake:
            tensors = {k: fake(v) for k, v in inputs.items()}
            hidden = {"output_hidden_states": True} if output.startswith("hidden_states.") else {}
            result = model(**tensors, **hidden)
            _, tensor = self.reach(result, output)
            if not tensor.requires_grad:
                return list(named)
            grads = torch.autograd.grad(tensor.sum(), list(named.values()), allow_unused=True)
        return [name for name, grad in zip(named, grads, strict=True) if grad is None]

    @staticmethod
    def reach(result, output) -> tuple[str, object] | None:
        """The suffix after the call that reaches `output:` and the tensor it reaches, or None."""
        import torch

        if output == "cls" and "last_hidden_state" in result:
            return ".last_hidden_state[:, 0]", result["last_hidden_state"][:, 0]
        if isinstance(output, str) and output.startswith("hidden_states."):
            index, states = output.partition(".")[2], result.get("hidden_states") or ()
            if index.removeprefix("-").isdigit() and -len(states) <= int(index) < len(states):
                return f".hidden_states[{int(index)}]", states[int(index)]
            return None
        if output in [k for k, v in result.items() if isinstance(v, torch.Tensor)]:
            return f".{identifier(output)}", result[output]
        return None

    def pick(self, node, result, output) -> tuple[str, object]:
        """`reach`, or a located error naming the outputs there are."""
        import torch

        reached = self.reach(result, output)
        if reached is not None:
            return reached
        loc = node.param_loc("output") if "output" in node.params else node.op_loc()
        if isinstance(output, str) and output.startswith("hidden_states."):
            last = len(result.get("hidden_states") or ()) - 1
            raise SpecError(
                f"{node.id} has no hidden state {output.partition('.')[2]}",
                loc,
                node=node.id,
                hint=f"hidden_states.0 (the embeddings) to hidden_states.{last} (the last layer)",
            )
        fields = [k for k, v in result.items() if isinstance(v, torch.Tensor)]
        raise SpecError(
            f"{node.op} gives no output {output!r}",
            loc,
            node=node.id,
            hint="its outputs: " + ", ".join([*fields, "hidden_states.N", "cls"]),
        )


# PIL's resampling codes, which image processor configs give as `resample`
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def image_processor_input(weights: str) -> WeightsInput | None:
    """What a Hugging Face vision model's weights expect: their image processor config
    (preprocessor_config.json beside config.json, in a local folder or the Hugging Face cache;
    never the network). None where there is none, or it does not normalise."""
    import json

    if is_local(weights):
        path = os.path.join(os.path.expanduser(weights), "preprocessor_config.json")
    else:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(weights, "preprocessor_config.json")
    if not isinstance(path, str) or not os.path.isfile(path):
        return None
    with open(path) as file:
        cfg = json.load(file)
    if not cfg.get("do_normalize", True) or "image_mean" not in cfg or "image_std" not in cfg:
        return None
    size, crop = cfg.get("size") or {}, cfg.get("crop_size") or {}
    if isinstance(size, int):
        size = {"shortest_edge": size}
    resize = (size["height"], size["width"]) if "height" in size else None
    resize = (size["shortest_edge"],) if "shortest_edge" in size else resize
    if cfg.get("do_center_crop") and "height" in crop:
        trained = crop["height"]
    else:  # resized to exactly (height, width): a centre crop of the height changes nothing
        trained = resize[0] if resize and len(resize) == 2 else None
    return WeightsInput(
        tuple(float(v) for v in cfg["image_mean"]),
        tuple(float(v) for v in cfg["image_std"]),
        f"Hugging Face {docstring_text(weights)} preprocessor_config.json",
        resize=resize,
        crop=trained,
        interpolation=RESAMPLE.get(cfg.get("resample"), "bilinear"),
    )
