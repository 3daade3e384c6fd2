"""web/js/vibeboard_audio.js asks the ComfyUI frontend for its audio player widget on VBSaveAudio only.

Checked for real in the 1.27.10 frontend (headless Chromium): with the widget the saved file plays in the node
and the frontend's Comfy.AudioWidget.onNodeOutputsUpdated no longer throws on our node. Here: the
extension's hook on stand-in node definitions, run by node.js with a stub `app`.
"""
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE = shutil.which("node")

DRIVER = """
import { app } from "../../scripts/app.js";
import { addAudioPlayer } from "./vibeboard_audio.js";
const ext = app.extensions.find((e) => e.name === "vibeboard.audio_player");
const save = {name: "VBSaveAudio", input: {required: {audio: ["AUDIO", {}], format: [["flac", "wav"], {}]}}};
const other = {name: "VBSaveVideo", input: {required: {images: ["IMAGE", {}]}}};
const bare = {name: "VBSaveAudio"};
await ext.beforeRegisterNodeDef(function () {}, save);
await ext.beforeRegisterNodeDef(function () {}, other);
await ext.beforeRegisterNodeDef(function () {}, bare);
const again = addAudioPlayer(save);
console.log(JSON.stringify({save: Object.keys(save.input.required), ui: save.input.required.audioUI,
                            other: Object.keys(other.input.required), bare: bare.input.required, again}));
"""


@pytest.mark.skipif(NODE is None, reason="node.js not installed")
def test_audio_player_widget_only_on_audio_savers(tmp_path):
    ext_dir = tmp_path / "extensions" / "vibeboard"
    ext_dir.mkdir(parents=True)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(
        "export const app = { extensions: [], registerExtension(e) { this.extensions.push(e); } };\n")
    shutil.copy(os.path.join(ROOT, "web", "js", "vibeboard_audio.js"), ext_dir / "vibeboard_audio.js")
    (ext_dir / "driver.mjs").write_text(DRIVER)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    out = subprocess.run([NODE, str(ext_dir / "driver.mjs")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["save"] == ["audio", "format", "audioUI"]  # appended last: outside input_order
    assert result["ui"] == ["AUDIO_UI", {}]
    assert result["other"] == ["images"]
    assert result["bare"] == {"audioUI": ["AUDIO_UI", {}]}
    assert result["again"] is False
