"""Review fix: `vibeboard serve --config FILE` with the token in the file may bind a public address."""
import json

from vibeboard_runner import cli


def test_token_from_config_file_allows_a_public_bind(tmp_path, monkeypatch):
    import vibeboard_runner.server as server_module
    started = {}

    class FakeServer:
        def __init__(self, config):
            started["config"] = config

        def serve_forever(self):
            started["served"] = True

    monkeypatch.setattr(server_module, "VibeServer", FakeServer)
    for name in ("VIBEBOARD_TOKEN", "VIBEBOARD_CONFIG", "VIBEBOARD_STORAGE", "VIBEBOARD_S3_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"token": "file-token", "storage": {"kind": "none"}}))
    code = cli.main(["serve", "--host", "0.0.0.0", "--config", str(config), "--output-dir", str(tmp_path / "o")])
    assert code == 0 and started.get("served")
    assert started["config"].token == "file-token"


def test_public_bind_without_any_token_is_still_refused(tmp_path, monkeypatch):
    for name in ("VIBEBOARD_TOKEN", "VIBEBOARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    code = cli.main(["serve", "--host", "0.0.0.0", "--output-dir", str(tmp_path / "o")])
    assert code != 0
