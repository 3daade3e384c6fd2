"""`vibeboard cost`: what the managed-API calls cost, and the same work on the pod (auto-registered by cli.py).

  vibeboard cost [report] [--run RUN] [--json]     API spend per run, per model, per image / clip
  vibeboard cost compare [--gpu runpod-h200] [--jobs vibeboard-jobs.sqlite] [--pod-seconds-per-clip S]
  vibeboard cost prices [--json]                   the price table in force (with the date each was read)

The ledger is `vibeboard-costs.sqlite` next to the output folder (VIBEBOARD_COST_DB). Pod cost = GPU-hour rate
from the price table × seconds, measured from the server's job store (finished − started of successful jobs,
divided over the clips / images they wrote) unless --pod-seconds-per-clip/-image is given.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections import defaultdict

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 4, 2
VIDEO_EXT = (".mp4", ".webm", ".mov", ".mkv", ".gif")
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp")


def register(subparsers) -> None:
    cost = subparsers.add_parser("cost", help="managed-API spend (cost ledger) and pod vs API per clip/image/run")
    _common(cost, None)
    cost.set_defaults(func=cmd_report, run=None)
    sub = cost.add_subparsers(dest="cost_command")
    rep = sub.add_parser("report", help="spend per run, per model, per image / clip")
    _common(rep, argparse.SUPPRESS)
    rep.add_argument("--run", help="only this run id")
    rep.set_defaults(func=cmd_report)
    cmp_ = sub.add_parser("compare", help="cost per clip / image / run on the pod vs on the API")
    _common(cmp_, argparse.SUPPRESS)
    cmp_.add_argument("--gpu", default="runpod-h200", help="pod rate from the price table's 'pod' section")
    cmp_.add_argument("--jobs", help="job store to measure pod seconds from (default ./vibeboard-jobs.sqlite)")
    cmp_.add_argument("--pod-seconds-per-clip", type=float, help="use this instead of measuring")
    cmp_.add_argument("--pod-seconds-per-image", type=float, help="use this instead of measuring")
    cmp_.set_defaults(func=cmd_compare)
    pr = sub.add_parser("prices", help="the price table in force")
    _common(pr, argparse.SUPPRESS)
    pr.set_defaults(func=cmd_prices)


def _common(parser, default) -> None:
    # on `cost` and on each subcommand, so options work before or after it (SUPPRESS keeps the first value)
    parser.add_argument("--db", default=default,
                        help="cost ledger (default VIBEBOARD_COST_DB or ./vibeboard-costs.sqlite)")
    parser.add_argument("--prices", default=default, help="price table override (JSON/YAML; VIBEBOARD_PRICES)")
    parser.add_argument("--json", action="store_true", default=False if default is None else default)
    # the render farm's GPU-seconds (vibeboard_runner/farm/gpucost.py) are grouped by one of these
    parser.add_argument("--by", default=default, choices=["workflow", "model", "user", "job", "gpu_class", "worker"],
                        help="group the farm's GPU spend (GPU-seconds × $/h of the class)")
    parser.add_argument("--since", default=default, help="only since: 24h, 7d, a unix time or an ISO date")


def _costs():
    try:
        from vibeboard.managed_api import costs
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "custom_nodes"))
        from vibeboard.managed_api import costs
    return costs


def _db_path(args) -> str:
    return args.db or os.environ.get("VIBEBOARD_COST_DB") or "vibeboard-costs.sqlite"


def _ledger_rows(args):
    path = _db_path(args)
    if not os.path.exists(path):
        return path, []
    return path, [dict(r) for r in _costs().Ledger(path).rows(getattr(args, "run", None))]


def _money(value) -> str:
    return "n/a" if value is None else f"${value:,.4f}"


def api_summary(rows) -> dict:
    """Spend grouped by run and by (kind, model); unit cost per image / clip from successful calls."""
    by_run, by_model = defaultdict(lambda: {"calls": 0, "cost_usd": 0.0, "fallback_calls": 0}), {}
    for row in rows:
        run = by_run[row["run_id"] or "(no run id)"]
        run["calls"] += 1
        run["cost_usd"] += row["cost_usd"] or 0.0
        run["fallback_calls"] += int(row["fallback"] or 0)
        key = f"{row['kind']}:{row['model']}"
        entry = by_model.setdefault(key, {"kind": row["kind"], "model": row["model"], "provider": row["provider"],
                                          "calls": 0, "ok": 0, "failed": 0, "units": 0, "cost_usd": 0.0,
                                          "unpriced": 0, "price_checked": row["price_checked"]})
        entry["calls"] += 1
        entry["cost_usd"] += row["cost_usd"] or 0.0
        if row["status"] == "ok":
            entry["ok"] += 1
            entry["units"] += len(json.loads(row["outputs"] or "[]")) or 1
            entry["unpriced"] += row["cost_usd"] is None
        elif row["status"] != "running":
            entry["failed"] += 1
    for entry in by_model.values():
        entry["cost_per_unit"] = round(entry["cost_usd"] / entry["units"], 6) if entry["units"] else None
    return {"runs": {k: {**v, "cost_usd": round(v["cost_usd"], 6)} for k, v in by_run.items()},
            "models": sorted(by_model.values(), key=lambda e: (e["kind"], e["model"])),
            "total_usd": round(sum(r["cost_usd"] or 0.0 for r in rows), 6)}


def cmd_report(args) -> int:
    path, rows = _ledger_rows(args)
    summary = api_summary(rows)
    from .farm.gpucost import report as farm_report
    if args.json:
        print(json.dumps({"ledger": path, **summary, "gpu": farm_report(args, path, None)}, indent=1))
        return EXIT_OK
    if not rows:
        print(f"no API calls recorded in {path}")
        farm_report(args, path, sys.stdout)
        return EXIT_OK
    print(f"ledger {path}: {len(rows)} call(s), total {_money(summary['total_usd'])}")
    print(f"{'kind':<9} {'model':<52} {'ok':>3} {'fail':>4} {'units':>5} {'spent':>10} {'per unit':>10}  price read")
    for e in summary["models"]:
        print(f"{e['kind']:<9} {e['model']:<52} {e['ok']:>3} {e['failed']:>4} {e['units']:>5} "
              f"{_money(e['cost_usd']):>10} {_money(e['cost_per_unit']):>10}  {e['price_checked'] or '-'}")
    print(f"\n{'run':<24} {'calls':>5} {'fallback':>8} {'spent':>10}")
    for run, r in summary["runs"].items():
        print(f"{run:<24} {r['calls']:>5} {r['fallback_calls']:>8} {_money(r['cost_usd']):>10}")
    farm_report(args, path, sys.stdout)
    return EXIT_OK


def pod_seconds(jobs_path: str) -> dict:
    """Measured pod time per clip and per image from successful jobs in a job store."""
    out = {"jobs": 0, "jobs_seconds": 0.0, "clip_jobs_seconds": 0.0, "clips": 0, "image_jobs_seconds": 0.0,
           "images": 0}
    if not jobs_path or not os.path.exists(jobs_path):
        return out
    db = sqlite3.connect(f"file:{jobs_path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT history, started_at, finished_at FROM jobs WHERE status = 'success' AND "
                          "started_at IS NOT NULL AND finished_at IS NOT NULL").fetchall()
    finally:
        db.close()
    for history, started, finished in rows:
        entry = json.loads(history or "{}")
        names = [item.get("filename", "") for ui in (entry.get("outputs") or {}).values()
                 for items in ui.values() if isinstance(items, list) for item in items if isinstance(item, dict)]
        clips = sum(n.lower().endswith(VIDEO_EXT) for n in names)
        images = sum(n.lower().endswith(IMAGE_EXT) for n in names)
        # a render-farm job (vibeboard_runner/farm) knows its GPU-seconds; its wall time would include farm queueing
        seconds = (entry.get("farm") or {}).get("gpu_seconds") or (finished - started)
        out["jobs"] += 1
        out["jobs_seconds"] += seconds
        if clips:  # a job that made a clip is charged to its clips (its stills are by-products)
            out["clip_jobs_seconds"] += seconds
            out["clips"] += clips
        elif images:
            out["image_jobs_seconds"] += seconds
            out["images"] += images
    return out


def cmd_compare(args) -> int:
    costs = _costs()
    table = costs.load_prices(args.prices)
    try:
        rate = costs.pod_rate(args.gpu, table)
    except KeyError as exc:
        print(f"vibeboard cost compare: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    measured = pod_seconds(args.jobs or os.environ.get("VIBEBOARD_JOBS_DB") or "vibeboard-jobs.sqlite")
    per = {}
    for kind, given, seconds, count in (("clip", args.pod_seconds_per_clip, measured["clip_jobs_seconds"],
                                         measured["clips"]),
                                        ("image", args.pod_seconds_per_image, measured["image_jobs_seconds"],
                                         measured["images"])):
        secs = given if given is not None else (seconds / count if count else None)
        per[kind] = {"pod_seconds": None if secs is None else round(secs, 3),
                     "pod_usd": None if secs is None else round(secs * rate / 3600.0, 6),
                     "measured_from": "given" if given is not None else f"{count} {kind}(s) in the job store"}
    if measured["jobs"]:
        run_secs = measured["jobs_seconds"] / measured["jobs"]
        per["run"] = {"pod_seconds": round(run_secs, 3), "pod_usd": round(run_secs * rate / 3600.0, 6),
                      "measured_from": f"{measured['jobs']} job(s) in the job store"}
    _, rows = _ledger_rows(args)
    summary = api_summary(rows)
    api = {kind: [m for m in summary["models"] if m["kind"] == kind and m["cost_per_unit"] is not None]
           for kind in ("clip", "image")}
    runs = summary["runs"]
    result = {"gpu": args.gpu, "usd_per_hour": rate, "pod": per, "api": api, "api_runs": runs,
              "pod_measured": measured}
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    print(f"pod: {args.gpu} at ${rate:.2f}/h")
    for kind in ("clip", "image"):
        p = per[kind]
        pod_text = (f"{_money(p['pod_usd'])} ({p['pod_seconds']:.1f} s, {p['measured_from']})"
                    if p["pod_usd"] is not None else "no pod measurement (pass --pod-seconds-per-" + kind + ")")
        print(f"\nper {kind}: on the pod {pod_text}")
        if not api[kind]:
            print("  on the API: no priced calls recorded")
        for m in api[kind]:
            ratio = (f"  = {m['cost_per_unit'] / p['pod_usd']:.1f}x the pod" if p["pod_usd"] else "")
            print(f"  on the API: {m['model']}: {_money(m['cost_per_unit'])} per {kind} "
                  f"(n={m['units']}, price read {m['price_checked'] or '-'}){ratio}")
    if "run" in per:
        print(f"\nper run on the pod: {_money(per['run']['pod_usd'])} ({per['run']['pod_seconds']:.1f} s, "
              f"{per['run']['measured_from']})")
    if runs:
        print("per run on the API: " + ", ".join(f"{k} {_money(v['cost_usd'])}" for k, v in runs.items()))
    return EXIT_OK


def cmd_prices(args) -> int:
    table = _costs().load_prices(args.prices)
    if args.json:
        print(json.dumps(table, indent=1))
        return EXIT_OK
    for model, e in table["models"].items():
        if e["unit"] == "million_tokens":
            price = f"${e['input']}/M in, ${e['output']}/M out"
        elif e["unit"] == "clip_plus_second":
            price = f"${e['base_price']} per {e['base_seconds']} s + ${e['per_extra_second']}/extra s"
        else:
            price = f"${e['price']} per {e['unit']}"
        print(f"{model:<52} {price:<42} read {e.get('checked', '-')}")
    for gpu, e in table.get("pod", {}).items():
        print(f"{'pod ' + gpu:<52} ${e['usd_per_hour']}/h{'':<33} read {e.get('checked', '-')}")
    return EXIT_OK
