"""Generated models built without the network, and a fake Hugging Face cache.

`build_offline` builds several generated models in ONE fresh interpreter that cannot reach the
network (a fresh one because huggingface_hub reads HF_HUB_OFFLINE and its cache's place when
imported; one for all because each imports torch, seconds apiece). Run as a script, this file is
that interpreter: each model's failure is printed by the interpreter's own `sys.excepthook`, as
if uncaught, between separators, and `build_offline` hands each model its own output."""

import importlib.util
import os
import subprocess
import sys
import time

SEPARATOR = "=== offline build: "
EXIT = "=== offline exit: "
BUILT_WITHOUT = "built with pretrained=False"
REVISION = "0" * 40


def build_offline(folder, names, env: dict) -> dict[str, subprocess.CompletedProcess]:
    """Build `folder/NAME.py`'s `Net` for each of `names` in one fresh interpreter whose requests
    all go to a proxy on a closed port (environment `env` over this one): with pretrained=False
    first (printing BUILT_WITHOUT once it works), then with the weights, the build a failure
    ends on. Each name's result reads as if its build alone had run: what the interpreter printed
    before the first build, then that build's output and the exit status it ended with."""
    offline = {**os.environ, "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", **env}
    for name in ("no_proxy", "NO_PROXY"):
        offline.pop(name, None)
    args = [sys.executable, __file__, str(folder), *names]
    run = subprocess.run(args, capture_output=True, text=True, env=offline, timeout=600)
    stdout, stderr = _sections(run.stdout), _sections(run.stderr)
    assert run.returncode == 0 and list(stdout) == list(stderr) == ["", *names], run.stderr[-3000:]
    runs = {}
    for name in names:
        out, _, status = stdout[name].rpartition(EXIT)
        runs[name] = subprocess.CompletedProcess(
            args, int(status), stdout[""] + out, stderr[""] + stderr[name]
        )
    return runs


def _sections(text: str) -> dict[str, str]:
    """The text before the first separator (under "") and after each (under its name)."""
    sections, name = {"": ""}, ""
    for line in text.splitlines(keepends=True):
        if line.startswith(SEPARATOR):
            name = line.removeprefix(SEPARATOR).strip()
            sections[name] = ""
        else:
            sections[name] += line
    return sections


def _build_each(folder: str, names: list[str]) -> None:
    """In the fresh interpreter: each build as `import model; model.Net(...)` would run it."""
    # huggingface_hub retries a refused request five times, sleeping 1 to 8 s between: up to three
    # minutes a build without the network; the sleeps go, the requests and their failures stay.
    time.sleep = lambda seconds: None
    for name in names:
        for stream in (sys.stdout, sys.stderr):
            print(SEPARATOR + name, file=stream, flush=True)
        status = 0
        try:
            spec = importlib.util.spec_from_file_location(name, os.path.join(folder, f"{name}.py"))
            model = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(model)
            model.Net(pretrained=False)
            print(BUILT_WITHOUT, flush=True)
            model.Net()
        except Exception:
            sys.excepthook(*sys.exc_info())  # what the interpreter prints for an uncaught error
            status = 1
        print(f"{EXIT}{status}", flush=True)


def hub_snapshot(hub, repo_id: str):
    """The (new) snapshot folder of model `repo_id` in the Hugging Face cache `hub`, in
    hf_hub_download's layout: `refs/main` names it."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


def use_hub_cache(monkeypatch, hub) -> None:
    """Point this process's Hugging Face libraries at the cache `hub`, as HF_HUB_CACHE does in a
    fresh interpreter: huggingface_hub reads the variable when imported and the place at each call.
    Imported here: transformers is optional."""
    import transformers.utils.hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    # transformers before 5 takes its own copy on import and reads that (5 has none to set)
    monkeypatch.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", str(hub), raising=False)


if __name__ == "__main__":
    _build_each(sys.argv[1], sys.argv[2:])
