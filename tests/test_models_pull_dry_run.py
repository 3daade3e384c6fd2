"""`vibeboard models pull NAME --dry-run`: every file upstream loads for FlashPortrait and for the InfiniteTalk
audio path (and the models they need) is listed with where it goes, and nothing is fetched; a file published
on a hub revision (chinese-wav2vec2-base's safetensors on refs/pr/1) is pulled from that revision."""
import os
import sys

import pytest

from vibeboard.models import download, registry


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    import huggingface_hub

    def refuse(*a, **k):
        raise AssertionError("a dry run must not download")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    from vibeboard.common import runtime
    monkeypatch.setenv("VIBEBOARD_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setitem(runtime._dirs, "models", str(tmp_path / "models"))  # earlier tests may have set the dirs
    monkeypatch.delenv("VIBEBOARD_COMFYUI_DIR", raising=False)
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    return tmp_path / "models"


def _listed(capsys, name):
    from vibeboard_runner.cli import main
    assert main(["models", "pull", name, "--dry-run"]) == 0
    return capsys.readouterr().out


def test_flashportrait_dry_run_lists_the_five_release_files_and_the_wan_base(offline, capsys):
    out = _listed(capsys, "flashportrait")
    for f in ("transformer.pt", "portrait_encoder.pt", "face_det.onnx", "face_landmark.onnx", "pd_fpg.pth"):
        assert f"FrancisRing/FlashPortrait/{f} → {offline / 'checkpoints' / 'FlashPortrait' / f}" in out
    for needed in ("wan2.1_i2v_720p_14B_bf16.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                   "wan_2.1_vae.safetensors", "clip_vision_h.safetensors", "spiece.model"):
        assert needed in out
    assert "[32.00 GB, pickle]" in out and "nothing was downloaded" in out
    assert not [f for _, _, fs in os.walk(offline) for f in fs]  # nothing written


def test_infinitetalk_dry_run_lists_adapter_wav2vec2_and_base(offline, capsys):
    out = _listed(capsys, "infinitetalk")
    assert f"MeiGen-AI/InfiniteTalk/single/infinitetalk.safetensors → " \
           f"{offline / 'diffusion_models' / 'InfiniteTalk' / 'single' / 'infinitetalk.safetensors'}" in out
    wav = offline / "checkpoints" / "chinese-wav2vec2-base"
    for f in ("config.json", "preprocessor_config.json"):
        assert f"TencentGameMate/chinese-wav2vec2-base/{f} → {wav / f}" in out
    assert f"TencentGameMate/chinese-wav2vec2-base/model.safetensors@refs/pr/1 → {wav / 'model.safetensors'}" in out
    assert "wan2.1_i2v_480p_14B_bf16.safetensors" in out and "clip_vision_h.safetensors" in out
    rows = download.plan("infinitetalk", "multi")
    assert rows[0]["path"] == "multi/infinitetalk.safetensors" and rows[0]["present"] is None
    assert {r["model"] for r in rows} >= {"chinese-wav2vec2-base", "wan2.1-i2v-14b-480p", "wan2.1-vae"}


def test_a_present_file_is_reported_present(offline, capsys):
    target = offline / "checkpoints" / "chinese-wav2vec2-base" / "config.json"
    target.parent.mkdir(parents=True)
    target.write_text("{}")
    out = _listed(capsys, "chinese-wav2vec2-base")
    assert f"present {target}" in out and out.count("would fetch") == 2


def test_pull_fetches_a_file_from_its_published_revision(offline, monkeypatch):
    import huggingface_hub
    calls = []

    def fake(repo, path, local_dir, revision=None, **k):
        calls.append((repo, path, revision))
        dest = os.path.join(local_dir, path)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as fh:
            fh.write("{}")
        return dest
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setattr(download, "hub_reachable", lambda endpoint=None: True)
    monkeypatch.setattr(download, "published_sha256", lambda repo, paths, *a, **k: {p: None for p in paths})
    paths = download.pull("chinese-wav2vec2-base", log=lambda s: None)
    assert calls == [("TencentGameMate/chinese-wav2vec2-base", "config.json", None),
                     ("TencentGameMate/chinese-wav2vec2-base", "preprocessor_config.json", None),
                     ("TencentGameMate/chinese-wav2vec2-base", "model.safetensors", "refs/pr/1")]
    assert [os.path.basename(p) for p in paths] == ["config.json", "preprocessor_config.json", "model.safetensors"]
    assert registry.status("chinese-wav2vec2-base")["hf"]["present"]
