"""`vibeboard models list|pull|verify|path` and `vibeboard selftest` (auto-registered by vibeboard_runner/cli.py)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 4, 2


def register(subparsers) -> None:
    models = subparsers.add_parser("models", help="model registry: list, pull, verify, path")
    msub = models.add_subparsers(dest="models_command", required=True)

    def common(p):
        p.add_argument("--comfyui", help="a ComfyUI folder whose models/ to use too (or VIBEBOARD_COMFYUI_DIR)")
        p.add_argument("--models-dir", help="our models folder (default VIBEBOARD_MODELS_DIR or ./models)")

    p = msub.add_parser("list", help="every registry model: present or missing, size, where")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("pull", help="download a model (huggingface_hub; atomic, checksummed)")
    common(p)
    p.add_argument("name")
    p.add_argument("--source", help="which source of the entry (default: the first; see `models list`)")
    p.add_argument("--to", help="models root to download into (default: our models dir; --comfyui: ComfyUI's)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the SHA-256 check")
    p.add_argument("--keep-partial", action="store_true", help="keep staging data on failure (resume later)")
    p.add_argument("--dry-run", action="store_true",
                   help="list every file the model and the models it needs would fetch, and where; download nothing")
    p.set_defaults(func=cmd_pull)
    p = msub.add_parser("verify", help="check present files (headers; --checksum: SHA-256 recorded at pull)")
    common(p)
    p.add_argument("name", nargs="?")
    p.add_argument("--checksum", action="store_true")
    p.set_defaults(func=cmd_verify)
    p = msub.add_parser("path", help="print where a model's files are (exit 1 when missing)")
    common(p)
    p.add_argument("name")
    p.add_argument("--source")
    p.set_defaults(func=cmd_path)
    st = subparsers.add_parser("selftest", help="tiny models in the published layouts → every Wan workflow")
    st.add_argument("--keep", help="write the tiny models here and keep them (default: a temp dir)")
    st.add_argument("--only", nargs="*", help="workflow names (t2v, t2v_diffusers_folder, t2v_lora, "
                                              "i2v_first_last, vace, v2v)")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_selftest)


def _setup(args):
    try:
        import vibeboard  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "custom_nodes"))
    if getattr(args, "models_dir", None):
        os.environ["VIBEBOARD_MODELS_DIR"] = os.path.abspath(args.models_dir)
        from vibeboard.common import runtime
        runtime.set_host_dirs(models=os.environ["VIBEBOARD_MODELS_DIR"])
    if getattr(args, "comfyui", None):
        os.environ["VIBEBOARD_COMFYUI_DIR"] = os.path.abspath(args.comfyui)
    from vibeboard.models import registry
    return registry


def cmd_list(args) -> int:
    registry = _setup(args)
    rows, data = [], {}
    for name, entry in registry.load_registry()["models"].items():
        st = registry.status(name)
        data[name] = {"title": entry["title"], "licence": entry["licence"], "nodes": entry.get("nodes", []),
                      "sources": st}
        present = [s for s, v in st.items() if v["present"]]
        where = st[present[0]]["paths"][0] if present else ""
        first = next(iter(st))
        rows.append((name, "present" if present else "missing", present[0] if present else first,
                     st[present[0] if present else first]["size_gb"], where))
    if args.json:
        print(json.dumps(data, indent=1))
        return EXIT_OK
    print(f"{'model':<22} {'status':<8} {'source':<20} {'size':>9}  where")
    for name, status, source, size, where in rows:
        print(f"{name:<22} {status:<8} {source:<20} {size:>7.2f}GB  {where}")
    print(f"\nroots: {registry.folder_dirs('diffusion_models')[0].rsplit(os.sep, 1)[0]}"
          + (f", ComfyUI {registry.comfyui_models_dir()}" if registry.comfyui_models_dir() else "")
          + "\nsizes are approximate (see registry.json notes); `vibeboard models pull NAME [--source S]`")
    return EXIT_OK


def cmd_pull(args) -> int:
    registry = _setup(args)
    from vibeboard.models import download
    root = args.to or (registry.comfyui_models_dir() if args.comfyui else None)
    if getattr(args, "dry_run", False):
        return _pull_dry_run(registry, download, args, root)
    try:
        registry.entry(args.name)
        paths = download.pull(args.name, args.source, root=root, verify=args.verify, keep_partial=args.keep_partial)
    except KeyError as exc:
        print(f"vibeboard models pull: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    except download.PullError as exc:
        print(f"vibeboard models pull {args.name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for p in paths:
        print(p)
    return EXIT_OK


def _pull_dry_run(registry, download, args, root) -> int:
    try:
        rows = download.plan(args.name, args.source, root=root)
    except KeyError as exc:
        print(f"vibeboard models pull: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    entry = registry.entry(args.name)
    if entry.get("status") == "planned":
        print(f"note: no VibeBoard node loads {args.name} yet: {entry.get('status_note', '')}")
    total = 0.0
    for r in rows:
        what = f"{r['repo']}/{r['path']}" if r["path"] else f"{r['repo']} (whole repo)"
        what += f"@{r['revision']}" if r["revision"] else ""
        size = r["size_gb"] or 0.0
        total += 0.0 if r["present"] else size
        state = f"present {r['present']}" if r["present"] else "would fetch"
        print(f"{r['model']:<22} {what} → {r['dest']}  [{size:.2f} GB, {r['format']}] {state}"
              + (f"  (needed by {r['needed_by']})" if r["needed_by"] else ""))
    print(f"dry run: {len(rows)} file(s), {total:.2f} GB to fetch; nothing was downloaded")
    return EXIT_OK


def cmd_verify(args) -> int:
    registry = _setup(args)
    from vibeboard.models import download
    names = [args.name] if args.name else [n for n in registry.load_registry()["models"]
                                           if any(v["paths"] for v in registry.status(n).values())]
    ok = True
    for name in names:
        print(f"[{name}]")
        ok &= download.verify(name, checksum=args.checksum)
    if not names:
        print("no registry model is present yet")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_path(args) -> int:
    registry = _setup(args)
    try:
        st = registry.status(args.name)
    except KeyError as exc:
        print(f"vibeboard models path: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    for source, v in st.items():
        if args.source and source != args.source:
            continue
        if v["present"]:
            for p in v["paths"]:
                print(p)
            return EXIT_OK
    missing = [rel for v in st.values() for rel in v["missing"]][:3]
    print(f"{args.name} is not present (expected e.g. {', '.join(missing)} under "
          f"{os.environ.get('VIBEBOARD_MODELS_DIR', 'models')}); `vibeboard models pull {args.name}`",
          file=sys.stderr)
    return 1


def run_selftest(root: str, only=None, log=print) -> dict:
    """Build the tiny layouts under `root` and run each workflow through the embedded executor."""
    models_dir, input_dir = os.path.join(root, "models"), os.path.join(root, "input")
    os.environ["VIBEBOARD_MODELS_DIR"] = models_dir
    from vibeboard.common import runtime
    runtime.set_host_dirs(models=models_dir)
    from vibeboard.models import selftest, vram
    from vibeboard_runner.executor import Executor
    from vibeboard_runner.registry import NodeRegistry
    t0 = time.perf_counter()
    selftest.prepare(models_dir, input_dir)
    log(f"tiny models written in {time.perf_counter() - t0:.1f}s under {models_dir}")
    # A small simulated budget on CPU exercises eviction between the workflows' models.
    device = "cuda" if __import__("torch").cuda.is_available() else "cpu"
    vram.set_manager(vram.VramManager(budget_bytes=4 * 1024 ** 2 if device == "cpu" else None, device=device))
    reg = NodeRegistry.default(embedded=True)
    ex = Executor(reg, output_dir=os.path.join(root, "output"), input_dir=input_dir,
                  temp_dir=os.path.join(root, "temp"), models_dir=models_dir)
    report = {}
    for name, (prompt, lat, img) in selftest.workflows().items():
        if only and name not in only:
            continue
        t = time.perf_counter()
        try:
            result = ex.execute(prompt)
            problems = selftest.check(result, lat, img)
        except Exception as exc:  # a crash is a failed check, not a crashed selftest
            problems = [f"{type(exc).__name__}: {exc}"]
        report[name] = {"ok": not problems, "problems": problems, "seconds": round(time.perf_counter() - t, 2)}
        log(f"{'PASS' if not problems else 'FAIL'} {name:<22} {report[name]['seconds']:6.2f}s "
            + ("; ".join(problems)))
    report["_vram"] = vram.manager().stats()
    return report


def cmd_selftest(args) -> int:
    _setup(args)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        report = run_selftest(os.path.abspath(args.keep), args.only)
    else:
        with tempfile.TemporaryDirectory(prefix="vibeboard-selftest-") as tmp:
            report = run_selftest(tmp, args.only)
    runs = {k: v for k, v in report.items() if not k.startswith("_")}
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    failed = [k for k, v in runs.items() if not v["ok"]]
    print(f"selftest: {len(runs) - len(failed)}/{len(runs)} workflows passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return EXIT_OK if not failed and runs else EXIT_FAILED
