"""`vibeboard serve --front-end-root PATH` serves another built ComfyUI editor (e.g. frontend 1.27, which ComfyUI
0.3.64 pins) at `/`, as ComfyUI's own flag does; a folder without index.html stops the server at start."""
import pytest

from service_helpers import http, make_server


def _fake_frontend(folder, marker):
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text(f"<html><head><link rel=\"manifest\" href=\"/manifest.json\"></head>"
                                       f"<body>{marker}</body></html>")
    (folder / "assets" / "app.js").write_text(f"// {marker}")
    return folder


def test_another_frontend_is_served_at_the_root(tmp_path):
    root = _fake_frontend(tmp_path / "fe127" / "static", "frontend-one-twenty-seven")
    server = make_server(tmp_path, front_end_root=str(root.parent))  # the package folder is accepted too
    try:
        status, page, _ = http("GET", server.url + "/")
        assert status == 200 and b"frontend-one-twenty-seven" in page
        assert b'crossorigin="use-credentials"' in page  # the same manifest fix as for the installed frontend
        status, script, _ = http("GET", server.url + "/assets/app.js")
        assert status == 200 and b"frontend-one-twenty-seven" in script
        assert http("GET", server.url + "/favicon.ico")[0] == 204  # none shipped: no failed request
        assert http("GET", server.url + "/assets/%2E%2E/%2E%2E/secret")[0] in (403, 404)  # confined
    finally:
        server.stop_thread()


def test_a_folder_without_index_html_stops_the_start(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="--front-end-root .*index.html"):
        make_server(tmp_path, front_end_root=str(tmp_path / "empty"))


def test_cli_option_and_environment(monkeypatch, tmp_path):
    import argparse
    from vibeboard_runner import cli_serve
    monkeypatch.setenv("VIBEBOARD_FRONT_END_ROOT", str(tmp_path))
    parser = argparse.ArgumentParser()
    cli_serve.register(parser.add_subparsers())
    args = parser.parse_args(["serve"])
    assert args.front_end_root == str(tmp_path)
    assert cli_serve.build_config(parser.parse_args(["serve", "--front-end-root", "/x"])).front_end_root == "/x"
