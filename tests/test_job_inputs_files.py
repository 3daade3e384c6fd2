"""Review fixes in job inputs: files fetched for one job never overwrite another input's file."""
import base64
import os

import pytest

from vibeboard_runner.job_inputs import apply_job_inputs
from vibeboard_runner.security import ApiError


def _b64(data: bytes, name="plate.png"):
    return {"base64": base64.b64encode(data).decode(), "filename": name}


def _prompt():
    return {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "b.png"}}}


def _content(input_dir, prompt, node_id):
    with open(os.path.join(input_dir, prompt[node_id]["inputs"]["image"]), "rb") as handle:
        return handle.read()


def test_two_inputs_with_the_same_file_name_in_one_job(tmp_path):
    prompt = _prompt()
    written = apply_job_inputs(prompt, {"1.image": _b64(b"first"), "2.image": _b64(b"second")}, str(tmp_path),
                               "job-1234567890")
    assert len(set(written)) == 2
    assert _content(tmp_path, prompt, "1") == b"first"
    assert _content(tmp_path, prompt, "2") == b"second"


def test_jobs_sharing_an_id_prefix_keep_their_own_inputs(tmp_path):
    # User-chosen job ids often share their first 8 characters; a queued job's input must survive.
    first, second = _prompt(), _prompt()
    apply_job_inputs(first, {"1.image": _b64(b"shot one")}, str(tmp_path), "render-shot-1")
    apply_job_inputs(second, {"1.image": _b64(b"shot two")}, str(tmp_path), "render-shot-2")
    assert _content(tmp_path, first, "1") == b"shot one"
    assert _content(tmp_path, second, "1") == b"shot two"


def test_a_bad_later_input_leaves_no_files_behind(tmp_path):
    with pytest.raises(ApiError):
        apply_job_inputs(_prompt(), {"1.image": _b64(b"ok"), "2.image": {"base64": "***not base64***"}},
                         str(tmp_path), "job-x")
    assert os.listdir(tmp_path) == []


def test_url_input_cut_off_is_refused(tmp_path):
    from vibeboard.common.replay_server import ReplayServer
    with ReplayServer([{"path": "/plate.png", "text": "x" * 50000, "truncate_to": 10}]) as server:
        with pytest.raises(ApiError) as info:
            apply_job_inputs(_prompt(), {"1.image": {"url": server.base + "/plate.png"}}, str(tmp_path), "job-cut")
        assert "1.image" in info.value.body["error"]["message"] and server.interactions[0]["used"] >= 1


def test_job_id_cannot_steer_the_input_file_out_of_the_folder(tmp_path):
    input_dir = tmp_path / "input"
    (input_dir / "vb-").mkdir(parents=True)  # e.g. made earlier through /upload/image subfolder=vb-
    prompt = _prompt()
    written = apply_job_inputs(prompt, {"1.image": _b64(b"data")}, str(input_dir), "/../../e")
    assert [p.name for p in tmp_path.iterdir()] == ["input"]  # nothing written next to the input folder
    assert os.path.isfile(input_dir / written[0]) and "/" not in written[0]
