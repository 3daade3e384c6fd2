"""An exposed server contacts public hosts only for its clients (URL inputs, webhooks, redirects)."""
import pytest

from vibeboard.common.replay_server import ReplayServer
from vibeboard_runner import netpolicy
from vibeboard_runner.job_inputs import apply_job_inputs
from vibeboard_runner.security import ApiError


def test_private_and_loopback_refused_when_exposed():
    with netpolicy.policy(allow_private=False):
        for url in ("http://127.0.0.1:9/x", "http://localhost/x", "http://10.1.2.3/x",
                    "http://169.254.169.254/meta", "http://[::1]/x", "http://192.168.0.5/x"):
            with pytest.raises(netpolicy.UrlRefused, match="non-public address"):
                netpolicy.check_url(url, "input 'x'")
        netpolicy.check_url("https://93.184.216.34/file.png", "input 'x'")  # a global address literal: allowed
        with pytest.raises(netpolicy.UrlRefused, match="only http"):
            netpolicy.check_url("file:///etc/passwd", "input 'x'")
    netpolicy.check_url("http://127.0.0.1:9/x", "input 'x'")  # only inside the block: nothing to reset


def test_allowed_on_loopback_servers():
    with netpolicy.policy(allow_private=True):
        netpolicy.check_url("http://127.0.0.1:9/x", "input 'x'")


def test_job_url_input_refused_with_a_clear_403(tmp_path):
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}}
    with netpolicy.policy(allow_private=False), pytest.raises(ApiError) as info:
        apply_job_inputs(prompt, {"1.image": {"url": "http://127.0.0.1:9/a.png"}}, str(tmp_path), "job1")
    assert info.value.status == 403 and "non-public" in str(info.value)


def test_redirect_to_a_private_host_is_refused():
    server = ReplayServer([{"path": "/x", "status": 302, "headers": {"location": "http://10.0.0.1/secret"}}]).start()
    try:
        real_check = netpolicy.check_url  # the first hop is allowed (loopback test server) …

        def check(url, what):  # … but the redirect target is judged as on an exposed server
            if what == "redirect":
                with netpolicy.policy(allow_private=False):
                    return real_check(url, what)
            return real_check(url, what)

        netpolicy.check_url = check
        with pytest.raises(netpolicy.UrlRefused, match="redirect"):
            netpolicy.open_url(server.base + "/x", 5, "input 'x'")
    finally:
        netpolicy.check_url = real_check
        server.stop()
