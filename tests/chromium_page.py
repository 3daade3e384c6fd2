"""Headless Chromium for the browser tests: load a page, let its script write JSON into <pre id="out">, read it."""
import json
import re
import shutil
import subprocess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def run_page(url, budget_ms=5000, timeout=60, attempts=2):
    """The page's JSON. Virtual time runs ahead of real media decoding on a loaded machine, so a page that
    reports its own wait timed out (or had not finished when the budget ran out) gets one more try; any other
    failure is final."""
    for attempt in range(attempts):
        try:
            return _run_page_once(url, budget_ms, timeout)
        except AssertionError as exc:
            if attempt == attempts - 1 or not any(k in str(exc) for k in ("timeout waiting", "pending")):
                raise


def _run_page_once(url, budget_ms, timeout):
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=timeout)
    match = re.search(r'<pre id="out">(.*?)</pre>', proc.stdout, re.S)
    assert match, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    assert not text.startswith(("ERROR", "pending")), text
    return json.loads(text)
