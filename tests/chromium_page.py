"""Headless Chromium for every browser test and tool, one launcher for both ways of driving it:

- `run_page(url)`: load a self-checking page (its script writes JSON into <pre id="out">) under a virtual-time
  budget and return that JSON — for pages that test themselves (widgets, the Dailies review page);
- `Browser()`: a long-lived Chromium driven over the DevTools protocol (websocket-client, no extra package):
  open pages, run JavaScript, log every HTTP response, take screenshots — for the real ComfyUI frontend.

Both retry what a loaded 2-core machine makes flaky (a page still pending when its budget ran out, a DevTools
endpoint slow to come up) once, and nothing else.
"""
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Flags every launch uses: no sandbox (CI runs as root), no GPU, /tmp instead of a small /dev/shm.
BASE_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--no-default-browser-check")


def chromium_command(*flags):
    """The Chromium command line with the shared flags, then `flags`."""
    if CHROMIUM is None:
        raise RuntimeError("Chromium is not installed (.ci/run installs it)")
    return [CHROMIUM, *BASE_FLAGS, *flags]


# --- self-checking pages ---------------------------------------------------------------------------------------

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
    with tempfile.TemporaryDirectory(prefix="vb-chromium-") as profile:
        proc = subprocess.run(chromium_command(f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                                               "--dump-dom", url),
                              capture_output=True, text=True, timeout=timeout)
    match = re.search(r'<pre id="out">(.*?)</pre>', proc.stdout, re.S)
    assert match, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    assert not text.startswith(("ERROR", "pending")), text
    return json.loads(text)


# --- a browser driven over the DevTools protocol ---------------------------------------------------------------

class Browser:
    def __init__(self, width=1600, height=1000, attempts=2):
        for attempt in range(attempts):
            try:
                self._start(width, height)
                return
            except AssertionError:
                self._stop()
                if attempt == attempts - 1:
                    raise

    def _start(self, width, height):
        import websocket  # websocket-client: a runner dependency
        self.profile = tempfile.TemporaryDirectory(prefix="vb-chromium-")
        self.proc = subprocess.Popen(
            chromium_command(f"--window-size={width},{height}", f"--user-data-dir={self.profile.name}",
                             "--remote-debugging-port=0", "about:blank"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.ws = None
        port = None
        deadline = time.time() + 45
        while time.time() < deadline and port is None:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                port = int(match.group(1))
        assert port, "Chromium did not start its DevTools endpoint"
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self._id = 0
        self.responses = []  # (status, url) of every HTTP response the page got
        self.failures = []   # (error, url) of requests that got no response
        self._urls = {}
        self.console = []
        self.call("Network.enable")
        self.call("Runtime.enable")
        self.call("Page.enable")

    def _event(self, message):
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self._urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.responseReceived":
            self.responses.append((params["response"]["status"], params["response"]["url"]))
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            self.failures.append((params.get("errorText"), self._urls.get(params.get("requestId"), "?")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            self.console.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])

    def call(self, method, **params):
        self._id += 1
        ident = self._id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def pump(self, seconds):
        """Let the page run, collecting events."""
        end = time.time() + seconds
        while time.time() < end:
            self.evaluate("1")
            time.sleep(0.1)

    def goto(self, url):
        self.call("Page.navigate", url=url)

    def evaluate(self, expression, timeout_s=60):
        """Run JS (may be async) in the page and return its JSON value; JS exceptions raise."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True,
                           timeout=int(timeout_s * 1000))
        if "exceptionDetails" in result:
            raise RuntimeError("page script failed: " + json.dumps(result["exceptionDetails"])[:1500])
        return result.get("result", {}).get("value")

    def wait_for(self, expression, timeout_s=60, what=None):
        end = time.time() + timeout_s
        while time.time() < end:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what or expression}; console: {self.console[-10:]}")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))
        return path

    def _stop(self):
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            proc = getattr(self, "proc", None)
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if getattr(self, "profile", None) is not None:
                self.profile.cleanup()

    def close(self):
        self._stop()
