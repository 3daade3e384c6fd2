"""The Script Lab workflow and CLI: headless, no network, no weights, on the screenplay shipped with the pack."""
import json
import os
import subprocess
import sys

from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WF = os.path.join(ROOT, "workflows")


def _cli(*args, cwd):
    """The real subprocess once (the installed entry point), in-process after that (faster on 2 cores)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "custom_nodes")]))
    return subprocess.run([sys.executable, "-m", "vibeboard_runner", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


def _main(capsys, monkeypatch, cwd, *args):
    from vibeboard_runner import cli
    monkeypatch.chdir(cwd)
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# script_lab.json ≡ script_lab.api.json: tests/test_workflows_match_nodes.py checks every saved workflow's twin.


def test_script_lab_workflow_runs_headless_and_twice_makes_a_revision(tmp_path):
    ex = Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "t")
    prompt = json.load(open(os.path.join(WF, "script_lab.api.json")))
    res = ex.execute(prompt)
    assert res.status == "success", res.error
    names = sorted(f["filename"] for f in res.output_files())
    assert [n.split("_0")[0] for n in names] == ["breakdown", "breakdown_sheet", "shot_list", "stripboard", "tagged"]
    data = json.load(open(tmp_path / "out" / "script_lab" / "breakdown_00001_.json"))
    assert [s["set_name"] for s in data["scenes"]][:2] == ["HARBOUR ROAD", "LIGHTHOUSE - LAMP ROOM"]
    board = json.load(open(tmp_path / "out" / "script_lab" / "stripboard_00001_.json"))
    assert board["swaps"] < board["script_order_swaps"] and board["gpu_minutes"] > 0
    res2 = Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                    temp_dir=tmp_path / "t").execute(prompt)
    assert res2.status == "success"
    data2 = json.load(open(tmp_path / "out" / "script_lab" / "breakdown_00002_.json"))
    assert data2["revision"] == 2 and data2["changes"]["unchanged"] == ["1", "2", "3", "4"]


def test_missing_script_is_a_clear_node_error(tmp_path):
    ex = Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=tmp_path / "in",
                  temp_dir=tmp_path / "t")
    prompt = json.load(open(os.path.join(WF, "script_lab.api.json")))
    prompt["1"]["inputs"]["script"] = "nope.fountain"
    res = ex.execute(prompt)
    assert res.status == "error"
    assert "Script Import" in str(res.error) and "script" in str(res.error) and "not found" in str(res.error)


def test_cli_script_breakdown_prints_scenes_cast_elements_and_json(tmp_path, capsys, monkeypatch):
    sample = os.path.join(ROOT, "custom_nodes", "vibeboard", "scriptlab", "samples", "the_lighthouse_keeper.fountain")
    run = _cli("run", os.path.join(WF, "script_lab.json"), "--quiet", cwd=tmp_path)  # the README's command
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "output" / "script_lab" / "project.vbdb").is_file()
    code, stdout, _ = _main(capsys, monkeypatch, tmp_path, "script", "breakdown", sample, "--db", "p.vbdb")
    assert code == 0
    for word in ("SCENES", "HARBOUR ROAD", "CAST", "MARA", "ELEMENTS", "OIL LAMP"):
        assert word in stdout
    code, stdout, _ = _main(capsys, monkeypatch, tmp_path, "script", "breakdown", sample, "--db", "p.vbdb", "--json")
    data = json.loads(stdout)
    assert code == 0 and data["revision"] == 2 and len(data["scenes"]) == 4 and data["cast"]
    code, _, _ = _main(capsys, monkeypatch, tmp_path, "script", "export", "fdx", "--db", "p.vbdb", "-o", "t.fdx")
    assert code == 0 and "TagNumber" in (tmp_path / "t.fdx").read_text()
    code, _, err = _main(capsys, monkeypatch, tmp_path, "script", "breakdown", "nope.fountain")
    assert code == 2 and "no such file" in err
    code, _, err = _main(capsys, monkeypatch, tmp_path, "validate", os.path.join(WF, "script_lab.json"))
    assert code == 0, err


def test_an_edited_script_is_read_again_by_the_same_executor(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    script = inp / "film.fountain"
    script.write_text("INT. ROOM - DAY\n\nAda reads.\n")
    ex = Executor(NodeRegistry.default(), output_dir=tmp_path / "out", input_dir=inp, temp_dir=tmp_path / "t")
    prompt = json.load(open(os.path.join(WF, "script_lab.api.json")))
    prompt["1"]["inputs"]["script"] = "film.fountain"
    assert ex.execute(prompt).status == "success"
    script.write_text("INT. ROOM - DAY\n\nAda reads a LETTER.\n\nEXT. GARDEN - NIGHT\n\nRain.\n")
    assert ex.execute(prompt).status == "success"
    data = json.load(open(tmp_path / "out" / "script_lab" / "breakdown_00002_.json"))
    assert data["revision"] == 2 and data["changes"]["changed"] == ["1"] and data["changes"]["added"] == ["2"]
