"""The price table (data) prices each call by what it produced; `vibeboard cost` reports the ledger and
compares pod and API per clip, per image and per run (pod seconds measured from a real job store)."""
import json
import sqlite3
import time

import pytest

from vibeboard_runner import cli
from vibeboard_runner.jobstore import JobStore
from vibeboard.managed_api import costs


def test_prices_follow_each_providers_unit():
    p = costs.price_call
    assert p("fal-ai/flux/dev", {"sizes": [(1024, 1024), (1920, 1080)]}).cost == pytest.approx(0.025 * (1 + 2))
    assert p("fal-ai/flux/schnell", {"sizes": [(64, 48)]}).quantity == 1  # rounded up to 1 MP
    assert p("fal-ai/flux-pro/kontext", {"sizes": [(2048, 2048)]}).cost == pytest.approx(0.04)  # flat
    kling = p("fal-ai/kling-video/v2.5-turbo/pro/image-to-video", {"seconds": 10.0})
    assert kling.cost == pytest.approx(0.35 + 5 * 0.07)
    assert p("fal-ai/kling-video/v2.5-turbo/pro/image-to-video", {"seconds": 5.04}).cost == pytest.approx(0.35 + 0.07)
    luma = p("fal-ai/luma-dream-machine/ray-2", {"resolution": "720p", "duration": "9s"})
    assert luma.cost == pytest.approx(0.5 * 2 * 2)
    assert p("fal-ai/veo3", {"seconds": 8, "audio": True}).cost == pytest.approx(3.2)
    assert p("fal-ai/veo3", {"seconds": 8, "audio": False}).cost == pytest.approx(1.6)
    grok = p("grok-4", {"input_tokens": 2_000_000, "output_tokens": 100_000})
    assert grok.cost == pytest.approx(6.0 + 1.5)
    unknown = p("fal-ai/brand-new", {"seconds": 5})
    assert unknown.cost is None and "no price" in unknown.note
    assert costs.price_call("fal-ai/flux/dev", {"sizes": [(512, 512)]}).checked == "2026-12-01"


def test_a_yaml_price_file_overrides_the_pack_table(tmp_path, monkeypatch):
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  fal-ai/flux/dev: {provider: fal, kind: image, unit: image, price: 0.5, "
                    "checked: '2027-01-02'}\npod:\n  my-4090: {usd_per_hour: 0.4}\n")
    monkeypatch.setenv("VIBEBOARD_PRICES", str(path))
    assert costs.price_call("fal-ai/flux/dev", {"sizes": [(64, 64)]}).cost == 0.5
    assert costs.price_call("fal-ai/flux/schnell", {"sizes": [(64, 64)]}).cost == 0.003  # untouched entries stay
    assert costs.pod_rate("my-4090") == 0.4


def _ledger(path):
    ledger = costs.Ledger(str(path))
    for run, model, kind, status, usage, outputs in [
        ("wf-a", "fal-ai/kling-video/v2.5-turbo/pro/text-to-video", "clip", "ok", {"seconds": 5}, ["c1.mp4"]),
        ("wf-a", "fal-ai/kling-video/v2.5-turbo/pro/text-to-video", "clip", "ok", {"seconds": 10}, ["c2.mp4"]),
        ("wf-b", "fal-ai/flux/dev", "image", "ok", {"sizes": [(1024, 1024)] * 2}, ["a.png", "b.png"]),
        ("wf-b", "fal-ai/flux/dev", "image", "timeout", {"sizes": [(1024, 1024)]}, []),
    ]:
        price = costs.price_call(model, usage)
        ledger.record(provider="fal.ai", model=model, kind=kind, status=status, price=price, run_id=run,
                      outputs=outputs, fallback=(run == "wf-a"))
    return ledger


def test_ledger_charges_only_what_was_delivered(tmp_path):
    rows = [dict(r) for r in _ledger(tmp_path / "c.sqlite").rows()]
    assert [r["cost_usd"] for r in rows] == [pytest.approx(0.35), pytest.approx(0.70), pytest.approx(0.05), 0.0]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "timeout"]


def test_cost_report_groups_by_model_and_run(tmp_path, capsys):
    _ledger(tmp_path / "c.sqlite")
    assert cli.main(["cost", "--db", str(tmp_path / "c.sqlite"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_usd"] == pytest.approx(1.1)
    assert report["runs"]["wf-a"] == {"calls": 2, "cost_usd": pytest.approx(1.05), "fallback_calls": 2}
    clip = next(m for m in report["models"] if m["kind"] == "clip")
    assert clip["units"] == 2 and clip["cost_per_unit"] == pytest.approx(0.525)
    image = next(m for m in report["models"] if m["kind"] == "image")
    assert (image["ok"], image["failed"], image["cost_per_unit"]) == (1, 1, pytest.approx(0.025))
    assert cli.main(["cost", "report", "--db", str(tmp_path / "c.sqlite")]) == 0
    assert "fal-ai/flux/dev" in capsys.readouterr().out


def test_compare_measures_pod_seconds_from_the_job_store(tmp_path, capsys):
    _ledger(tmp_path / "c.sqlite")
    store = JobStore(str(tmp_path / "jobs.sqlite"))
    for job_id, seconds, files in (("j1", 100.0, ["shot_00001_.mp4"]), ("j2", 60.0, ["a.mp4", "b.mp4"]),
                                   ("j3", 10.0, ["still_00001_.png"])):
        store.add(job_id, {}, {}, [], store.next_number())
        history = {"outputs": {"9": {"images": [{"filename": f, "subfolder": "", "type": "output"} for f in files]}}}
        store.finish(job_id, "success", history)
        db = sqlite3.connect(str(tmp_path / "jobs.sqlite"))
        now = time.time()
        db.execute("UPDATE jobs SET started_at=?, finished_at=? WHERE id=?", (now - seconds, now, job_id))
        db.commit()
        db.close()
    store.close()
    assert cli.main(["cost", "compare", "--db", str(tmp_path / "c.sqlite"), "--jobs", str(tmp_path / "jobs.sqlite"),
                     "--gpu", "runpod-h200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pod"]["clip"]["pod_seconds"] == pytest.approx(160 / 3, rel=1e-3)  # 160 s over 3 clips
    assert out["pod"]["clip"]["pod_usd"] == pytest.approx(160 / 3 * 3.59 / 3600, rel=1e-3)
    assert out["pod"]["image"]["pod_seconds"] == pytest.approx(10.0, rel=1e-3)
    assert out["api"]["clip"][0]["cost_per_unit"] == pytest.approx(0.525)
    assert out["pod"]["run"]["pod_seconds"] == pytest.approx(170 / 3, rel=1e-3)
    assert out["api_runs"]["wf-a"]["cost_usd"] == pytest.approx(1.05)
    assert cli.main(["cost", "compare", "--db", str(tmp_path / "c.sqlite"), "--pod-seconds-per-clip", "101"]) == 0
    text = capsys.readouterr().out
    assert "per clip: on the pod $0.1007 (101.0 s, given)" in text and "x the pod" in text


def test_unknown_gpu_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["cost", "compare", "--db", str(tmp_path / "none.sqlite"), "--gpu", "nope"]) == 2
    assert "no pod rate for 'nope'" in capsys.readouterr().err
