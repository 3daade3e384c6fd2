"""`vibeboard models pull` fails clearly offline and never leaves a partial file behind."""
import os
import subprocess
import sys

import pytest

from vibeboard.common.replay_server import ReplayServer
from vibeboard.models import download, registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _models_dir_from_env(monkeypatch):
    """These tests point VIBEBOARD_MODELS_DIR at a temp dir; an executor run earlier may have pinned another."""
    from vibeboard.common import runtime
    monkeypatch.delitem(runtime._dirs, "models", raising=False)
    monkeypatch.delenv("VIBEBOARD_COMFYUI_DIR", raising=False)


def _files(root):
    return [os.path.join(b, f) for b, _, fs in os.walk(root) for f in fs]


def test_pull_offline_cli_message_and_no_files(tmp_path):
    env = dict(os.environ, VIBEBOARD_MODELS_DIR=str(tmp_path / "models"), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "vibeboard_runner", "models", "pull", "wan2.1-vae"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "no connection to the Hugging Face hub" in proc.stderr
    assert "vae/wan_2.1_vae.safetensors" in proc.stderr  # says where to put the file by hand
    assert _files(tmp_path) == []


@pytest.fixture()
def hub():
    """Answers like the hub but drops every download after 1000 of 100000 bytes."""
    head = {"etag": '"0123456789abcdef0123456789abcdef01234567"', "x-repo-commit": "a" * 40}
    answer = {"path": "re:.*", "headers": head, "text": "x" * 100000, "times": -1}
    with ReplayServer([dict(answer, method="HEAD"), dict(answer, method="GET", truncate_to=1000)]) as server:
        yield server.base


def test_interrupted_download_leaves_nothing(tmp_path, hub, monkeypatch):
    import time
    monkeypatch.setattr(time, "sleep", lambda s: None)  # huggingface_hub's retry back-off
    monkeypatch.setenv("VIBEBOARD_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(download.PullError, match="dropped mid-download"):
        download.pull("wan2.1-vae", endpoint=hub, log=lambda s: None)
    assert _files(tmp_path) == []
    # keep_partial keeps staging data hidden for a resume — never at the path loaders read
    with pytest.raises(download.PullError):
        download.pull("wan2.1-vae", endpoint=hub, keep_partial=True, log=lambda s: None)
    final = tmp_path / "models" / "vae" / "wan_2.1_vae.safetensors"
    assert not final.exists()
    assert all(".vb-download" in p for p in _files(tmp_path))
    assert registry.status("wan2.1-vae")["comfy"]["present"] is False


def test_registry_entries_are_complete():
    models = registry.load_registry()["models"]
    for name in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.1-vace-1.3b",
                 "wan2.1-vace-14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b", "umt5-xxl", "wan2.1-vae",
                 "clip-vision-h", "storymem-lora", "reco-lora", "infcam", "genfocus-loras", "flux1-dev",
                 "learn2refocus-unet", "flashportrait", "qwen-image-edit", "depth-anything-v2", "depth-pro"):
        e = models[name]
        assert e["licence"] and (e["nodes"] or e.get("status") == "planned") and e["sources"], name
        for src in e["sources"].values():
            assert "/" in src["repo"]
            assert src.get("diffusers") or src.get("folder") in registry.FOLDERS
            assert registry.source_size_gb(src) > 0


def test_comfyui_folder_is_searched(tmp_path, monkeypatch):
    comfy = tmp_path / "ComfyUI" / "models" / "vae"
    comfy.mkdir(parents=True)
    (comfy / "wan_2.1_vae.safetensors").write_bytes(b"0")
    monkeypatch.setenv("VIBEBOARD_MODELS_DIR", str(tmp_path / "ours"))
    assert registry.status("wan2.1-vae")["comfy"]["present"] is False
    monkeypatch.setenv("VIBEBOARD_COMFYUI_DIR", str(tmp_path / "ComfyUI"))
    st = registry.status("wan2.1-vae")["comfy"]
    assert st["present"] and st["paths"] == [str(comfy / "wan_2.1_vae.safetensors")]
    # pull finds it there and downloads nothing
    assert download.pull("wan2.1-vae", log=lambda s: None) == [str(comfy / "wan_2.1_vae.safetensors")]


def test_cli_list_path_verify(tmp_path, monkeypatch, capsys):
    import json
    import torch
    from safetensors.torch import save_file
    from vibeboard_runner.cli import main
    models = tmp_path / "models"
    monkeypatch.setenv("VIBEBOARD_MODELS_DIR", str(models))
    monkeypatch.delenv("VIBEBOARD_COMFYUI_DIR", raising=False)
    assert main(["models", "path", "wan2.1-vae"]) == 1
    assert "vibeboard models pull wan2.1-vae" in capsys.readouterr().err
    target = models / "vae" / "wan_2.1_vae.safetensors"
    target.parent.mkdir(parents=True)
    save_file({"decoder.conv1.weight": torch.zeros(2, 2)}, str(target))
    assert main(["models", "path", "wan2.1-vae"]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["wan2.1-vae"]["sources"]["comfy"]["present"] is True
    assert listed["wan2.1-t2v-1.3b"]["sources"]["comfy"]["present"] is False
    assert main(["models", "verify", "wan2.1-vae"]) == 0
    assert "ok   " in capsys.readouterr().out
    target.write_bytes(b"broken")
    assert main(["models", "verify", "wan2.1-vae"]) == 4
    assert "BAD" in capsys.readouterr().out
    assert main(["models", "pull", "no-such-model"]) == 2


def test_checksum_mismatch_discards_and_match_installs(tmp_path, monkeypatch):
    import hashlib
    import huggingface_hub
    payload = b"wan vae bytes"
    monkeypatch.setenv("VIBEBOARD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(download, "hub_reachable", lambda endpoint=None: True)

    def fake_download(repo, path, local_dir, **kw):
        out = os.path.join(local_dir, path)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "wb") as f:
            f.write(payload)
        return out
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(download, "published_sha256", lambda repo, paths, e=None, t=None: {paths[0]: "0" * 64})
    with pytest.raises(download.PullError, match="checksum mismatch"):
        download.pull("wan2.1-vae", log=lambda s: None)
    assert _files(tmp_path) == []
    good = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(download, "published_sha256", lambda repo, paths, e=None, t=None: {paths[0]: good})
    [path] = download.pull("wan2.1-vae", log=lambda s: None)
    assert path.endswith(os.path.join("vae", "wan_2.1_vae.safetensors")) and open(path, "rb").read() == payload
    assert download.recorded_checksum(path)["sha256"] == good
    assert [p for p in _files(tmp_path) if ".vb-download" in p] == []
