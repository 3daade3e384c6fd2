"""GPU-seconds → dollars for farm jobs, kept in the managed-API cost ledger (table gpu_usage).

A node's cost = its GPU-seconds × the worker's GPU-class price ($/h) / 3600; a job's cost is the sum of its
nodes' costs (what /history, the ws `executed` events and `vibeboard cost --by` show).
"""
from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Optional


def _costs():
    from vibeboard_runner.cli_cost import _costs as load  # the pack's managed_api.costs, found from the runner too
    return load()


def node_cost(seconds: float, usd_per_hour: Optional[float]) -> Optional[float]:
    return None if usd_per_hour is None else round(seconds * usd_per_hour / 3600.0, 8)


def job_costs(prompt: dict, timings: dict, usd_per_hour: Optional[float]) -> dict:
    """{"gpu_seconds", "cost_usd", "nodes": {id: {class_type, seconds, cost_usd}}}."""
    nodes = {str(nid): {"class_type": (prompt.get(nid) or {}).get("class_type"), "seconds": round(float(secs), 6),
                        "cost_usd": node_cost(float(secs), usd_per_hour)} for nid, secs in (timings or {}).items()}
    total = None if usd_per_hour is None else round(sum(n["cost_usd"] for n in nodes.values()), 8)
    return {"gpu_seconds": round(sum(n["seconds"] for n in nodes.values()), 6), "cost_usd": total,
            "usd_per_hour": usd_per_hour, "nodes": nodes}


def ledger_path(output_dir: str) -> str:
    return os.environ.get("VIBEBOARD_COST_DB") or os.path.join(
        os.path.dirname(os.path.abspath(output_dir)), "vibeboard-costs.sqlite")


def workflow_name(extra_data: dict) -> str:
    farm = (extra_data or {}).get("vibeboard_farm") or {}
    return str(farm.get("workflow") or (extra_data or {}).get("workflow_name") or "(unnamed)")


def record_job(path: str, job_id: str, extra_data: dict, client_id: Optional[str], status: str, farm: dict,
               models: list) -> None:
    """One ledger row per node that ran (+ one storage row) for a finished farm job."""
    user = str((extra_data or {}).get("user") or ((extra_data or {}).get("vibeboard_farm") or {}).get("user")
               or client_id or "(anonymous)")
    common = {"ts": time.time(), "job_id": job_id, "worker": farm.get("worker"), "gpu_class": farm.get("gpu_class"),
              "usd_per_hour": farm.get("usd_per_hour"), "workflow": workflow_name(extra_data),
              "model": ",".join(models) or "(none)", "user": user, "status": status, "attempt": farm.get("attempt")}
    rows = [{**common, "kind": "node", "node": nid, "class_type": n.get("class_type"), "seconds": n["seconds"],
             "cost_usd": n.get("cost_usd")} for nid, n in (farm.get("nodes") or {}).items()]
    rows.append({**common, "kind": "storage", "seconds": 0.0, "cost_usd": 0.0,
                 "storage_bytes": int(farm.get("storage_bytes") or 0)})
    _costs().Ledger(path).record_gpu(rows)


def summary(rows, by: str = "workflow") -> dict:
    """GPU spend grouped by workflow | model | user | job | gpu_class | worker."""
    groups = defaultdict(lambda: {"jobs": set(), "nodes": 0, "gpu_seconds": 0.0, "cost_usd": 0.0,
                                  "storage_bytes": 0, "unpriced": 0})
    for row in rows:
        row = dict(row)
        key = row.get({"job": "job_id"}.get(by, by)) or "(none)"
        entry = groups[key]
        entry["jobs"].add(row["job_id"])
        if row["kind"] == "storage":
            entry["storage_bytes"] += int(row["storage_bytes"] or 0)
            continue
        entry["nodes"] += 1
        entry["gpu_seconds"] += float(row["seconds"] or 0)
        if row["cost_usd"] is None:
            entry["unpriced"] += 1
        else:
            entry["cost_usd"] += float(row["cost_usd"])
    out = {}
    for key, e in sorted(groups.items()):
        jobs = len(e["jobs"])
        out[key] = {"jobs": jobs, "nodes": e["nodes"], "gpu_seconds": round(e["gpu_seconds"], 4),
                    "cost_usd": round(e["cost_usd"], 6), "per_job_usd": round(e["cost_usd"] / jobs, 6) if jobs else None,
                    "storage_bytes": e["storage_bytes"], "unpriced_nodes": e["unpriced"]}
    return out


def print_table(groups: dict, by: str, stream) -> None:
    total = sum(g["cost_usd"] for g in groups.values())
    print(f"GPU time on the farm by {by}: {len(groups)} group(s), total ${total:,.4f}", file=stream)
    print(f"{by:<32} {'jobs':>5} {'nodes':>6} {'GPU-s':>10} {'cost':>11} {'per job':>11} {'stored':>10}", file=stream)
    for key, g in groups.items():
        print(f"{str(key)[:32]:<32} {g['jobs']:>5} {g['nodes']:>6} {g['gpu_seconds']:>10.2f} "
              f"{'$' + format(g['cost_usd'], ',.4f'):>11} {'$' + format(g['per_job_usd'] or 0, ',.4f'):>11} "
              f"{g['storage_bytes'] / 1e6:>8.2f}MB", file=stream)


def parse_since(text: Optional[str]) -> Optional[float]:
    """--since: '24h', '7d', '90m', a unix time, or an ISO date/time (UTC when no zone is given)."""
    if not text:
        return None
    text = str(text).strip()
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime, timezone
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def report(args, ledger: str, stream) -> Optional[dict]:
    """`vibeboard cost [--by ...] [--since ...]`: the farm's GPU spend (None when the ledger has none)."""
    if not os.path.exists(ledger):
        return None
    try:
        since = parse_since(getattr(args, "since", None))
    except ValueError:
        raise SystemExit(f"vibeboard cost: --since expects 24h, 7d, a unix time or an ISO date, got {args.since!r}")
    rows = _costs().Ledger(ledger).gpu_rows(since)
    by = getattr(args, "by", None) or "workflow"
    if not rows and not getattr(args, "by", None):
        return None
    groups = summary(rows, by)
    if stream is not None:
        print("", file=stream)
        print_table(groups, by, stream)
    return {"by": by, "groups": groups}
