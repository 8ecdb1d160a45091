"""Offline, a generated model with pretrained weights fails with one error that names the weights,
says where the file goes and points at `pretrained=False`; following it makes the model build."""

import os
import subprocess
import sys

import nncompile
import pytest
import torch
import torchvision
from backbone_helpers import backbone_spec, cache_weights

BUILD = "import sys; sys.path.insert(0, sys.argv[1]); import model; model.Net({})"


def build_offline(folder, env: dict, pretrained: bool = True) -> subprocess.CompletedProcess:
    """Build the generated model in a fresh interpreter that cannot reach the network (every
    request goes to a proxy on a closed port)."""
    offline = {**os.environ, "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", **env}
    for name in ("no_proxy", "NO_PROXY"):
        offline.pop(name, None)
    code = BUILD.format("" if pretrained else "pretrained=False")
    return subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=offline, timeout=300
    )


def compile_into(tmp_path, text: str):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    nncompile.compile_spec(spec).write(tmp_path / "model.py")
    return tmp_path / "model.py"


def test_torchvision_download_failure_says_where_the_file_goes(torch_home, tmp_path):
    compile_into(tmp_path, backbone_spec("torchvision.resnet18", 64, body="weights: DEFAULT"))
    run = build_offline(tmp_path, {"TORCH_HOME": str(torch_home)})
    assert run.returncode == 1
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    file = torch_home / "hub" / "checkpoints" / weights.url.rpartition("/")[2]
    error = run.stderr.strip().splitlines()
    assert error[-2].startswith(f"RuntimeError: cannot download the pretrained weights {weights}: ")
    assert error[-1] == (
        f"To train offline, download {weights.url} as {file}; or create the model with "
        "pretrained=False (random weights, e.g. before loading a checkpoint)"
    )
    assert run.stderr.count("Traceback") == 1 and "During handling" not in run.stderr
    assert build_offline(tmp_path, {"TORCH_HOME": str(torch_home)}, pretrained=False).returncode == 0
    cache_weights(torch_home, weights, torchvision.models.resnet18())  # the file where the error said
    assert file.is_file()
    run = build_offline(tmp_path, {"TORCH_HOME": str(torch_home)})
    assert run.returncode == 0, run.stderr


def test_timm_download_failure_names_the_repository(tmp_path):
    pytest.importorskip("timm")
    compile_into(tmp_path, backbone_spec("timm.convnext_atto", 64, body="weights: DEFAULT"))
    home = tmp_path / "hf_home"
    run = build_offline(tmp_path, {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path)})
    assert run.returncode == 1
    error = run.stderr.strip().splitlines()
    assert error[-2].startswith(
        "RuntimeError: cannot download the pretrained weights timm/convnext_atto.d2_in1k: "
    )
    assert "`hf download timm/convnext_atto.d2_in1k`" in error[-1]
    assert f"copy the Hugging Face cache to {home / 'hub'}" in error[-1]
    assert "set `weights:` in the spec to a local file" in error[-1] and "pretrained=False" in error[-1]


def test_a_model_without_downloads_carries_no_helper(tmp_path):
    text = compile_into(tmp_path, backbone_spec("torchvision.resnet18", 64, body="weights: null")).read_text()
    assert "_PretrainedDownload" not in text
    weights = tmp_path / "w.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    text = compile_into(
        tmp_path, backbone_spec("torchvision.resnet18", 64, body=f"weights: {weights}")
    ).read_text()
    assert "_PretrainedDownload" not in text  # a local file is not downloaded
