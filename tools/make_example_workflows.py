#!/usr/bin/env python3
"""ComfyUI's convention for a pack's templates: `example_workflows/<name>.json` (UI format) + `<name>.jpg` thumbnail.
ComfyUI and `vibeboard serve` list them in the editor's template browser; the API twins stay in workflows/ only.

    python3 tools/make_example_workflows.py      # copy workflows/*.json (UI) and render each thumbnail

The copies must equal workflows/ (tests/test_workflow_layout.py checks it): edit workflows/, then re-run this.
Thumbnails are screenshots of the real editor (headless Chromium), 480×270 JPEG.
"""
from __future__ import annotations

import base64
import glob
import io
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from layout_workflows import ROOT, open_editor  # noqa: E402

EXAMPLES = os.path.join(ROOT, "example_workflows")
THUMB_SIZE = (480, 270)


def main() -> int:
    from PIL import Image
    os.makedirs(EXAMPLES, exist_ok=True)
    sources = sorted(p for p in glob.glob(os.path.join(ROOT, "workflows", "*.json")) if not p.endswith(".api.json"))
    with open_editor() as browser:
        browser.evaluate("document.querySelectorAll('[data-testid=toggle-minimap-button], "
                         "[data-testid=close-minimap-button]').forEach((b) => b.click()); 1")
        for path in sources:
            name = os.path.basename(path)[:-5]
            shutil.copyfile(path, os.path.join(EXAMPLES, name + ".json"))
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            browser.evaluate(f"(async () => {{ await app.loadGraphData({text});"
                             " await app.extensionManager.command.execute('Comfy.Canvas.FitView'); return 1 })()")
            browser.pump(0.5)
            png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
            image = Image.open(io.BytesIO(png)).convert("RGB")
            width, height = image.size
            crop = image.crop((56, 40, width, height))  # the graph, without the sidebar and the tab bar
            crop.thumbnail((THUMB_SIZE[0] * 2, THUMB_SIZE[1] * 2))
            thumb = Image.new("RGB", THUMB_SIZE, (32, 32, 32))
            crop.thumbnail(THUMB_SIZE)
            thumb.paste(crop, ((THUMB_SIZE[0] - crop.width) // 2, (THUMB_SIZE[1] - crop.height) // 2))
            thumb.save(os.path.join(EXAMPLES, name + ".jpg"), quality=80)
            print(f"example_workflows/{name}.json + .jpg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
