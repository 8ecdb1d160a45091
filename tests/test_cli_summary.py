"""`nncompile summary`: the per-node table and its totals, checked against independent counts."""

import json

SEED1 = "specs/seed1_resnet_head.yaml"
TWO_TOWER = "specs/two_tower_concat.yaml"


def test_summary_table_rows_and_totals(run_cli):
    code, out, err = run_cli("summary", SEED1)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "CustomResNet (from specs/seed1_resnet_head.yaml)"
    assert lines[2].split() == ["node", "op", "input", "output", "params", "weights", "grad", "MACs"]
    row = {line.split()[0]: line for line in lines[4:9]}
    assert row["resnet"].split()[-4:] == ["11,176,512", "pretrained", "trainable", "1.81G"]
    assert "(B, 3, 224, 224)  (B, 512)" in row["resnet"]
    assert row["fc1"].split()[-4:] == ["262,656", "new", "trainable", "262.14K"]
    assert row["relu"].split()[-4:] == ["0", "-", "-", "0"]
    assert "params: 11,444,298 total, 11,444,298 trainable, 0 frozen" in out
    assert "11,176,512 pretrained, 267,786 new" in out


def test_summary_json_agrees_with_torch(run_cli):
    import torch
    import torchvision

    code, out, _ = run_cli("summary", SEED1, "--json")
    assert code == 0
    data = json.loads(out)
    nodes = {n["node"]: n for n in data["nodes"]}
    resnet = torchvision.models.resnet18()
    resnet.fc = torch.nn.Identity()
    assert nodes["resnet"]["params"] == sum(p.numel() for p in resnet.parameters())
    assert nodes["resnet"]["pretrained"] == nodes["resnet"]["params"] and nodes["fc1"]["pretrained"] == 0
    # a Linear does in_features * out_features multiply-accumulates per sample
    assert nodes["fc1"]["macs"] == 512 * 512 and nodes["fc2"]["macs"] == 512 * 10
    assert data["totals"]["params"] == sum(n["params"] for n in data["nodes"])
    assert data["totals"]["new"] == data["totals"]["params"] - nodes["resnet"]["params"]
    assert data["outputs"] == {"logits": "(B, 10)"}


def test_summary_of_a_merge_lists_every_input(run_cli):
    code, out, _ = run_cli("summary", TWO_TOWER, "--json")
    data = json.loads(out)
    joined = next(n for n in data["nodes"] if n["node"] == "joined")
    assert joined["inputs"] == ["(B, 16)", "(B, 16)"] and joined["output"] == "(B, 32)"
    assert joined["macs"] is None  # not a module call: nothing measured
    conv = next(n for n in data["nodes"] if n["node"] == "conv")
    assert conv["macs"] == 16 * 32 * 32 * 3 * 3 * 3  # out channels x positions x kernel volume


def test_frozen_counts_match_the_generated_model():
    """Frozen/trainable per node equals what the generated module really freezes."""
    import importlib.util

    from conftest import ROOT
    from nncompile import compile_spec
    from nncompile.tools.summary import summarize

    spec = importlib.util.spec_from_file_location(
        "frozen", ROOT / "generated" / "frozen_resnet_param_groups.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.FrozenResNet(pretrained=False)
    table = summarize(compile_spec(ROOT / "specs" / "frozen_resnet_param_groups.yaml"))
    for row in table.rows:
        params = list(getattr(model, row.node).parameters())
        assert row.params == sum(p.numel() for p in params)
        assert row.trainable == sum(p.numel() for p in params if p.requires_grad), row.node
    resnet = next(r for r in table.rows if r.node == "resnet")
    assert 0 < resnet.trainable < resnet.params
    assert f"{resnet.params - resnet.trainable:,} frozen" in table.text()


def test_summary_of_a_bad_spec_exits_2(run_cli, write_spec):
    bad = write_spec(
        "nncompile: 1\nname: Net\ninputs: {x: [4]}\nnodes: {fc: {op: Linear}}\ntask: {kind: regression}\n"
    )
    code, out, err = run_cli("summary", bad)
    assert code == 2 and out == ""
    assert "nn.Linear needs `out_features`" in err
