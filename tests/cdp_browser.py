"""Headless Chromium driven over the DevTools protocol (websocket-client, no extra package): open pages, run
JavaScript, log every HTTP response, take screenshots. Used by the tests that run the real ComfyUI frontend."""
import base64
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import websocket

from chromium_page import CHROMIUM


class Browser:
    def __init__(self, width=1600, height=1000):
        self.profile = tempfile.TemporaryDirectory(prefix="vb-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", f"--window-size={width},{height}",
             f"--user-data-dir={self.profile.name}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.time() + 30
        while time.time() < deadline and port is None:
            line = self.proc.stderr.readline()
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

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.profile.cleanup()
