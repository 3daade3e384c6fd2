"""`vibeboard` command line: run / validate / nodes, plus every `vibeboard_runner/cli_*.py` module's commands."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import threading
import time

EXIT_OK, EXIT_USAGE, EXIT_INVALID, EXIT_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 4, 130


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(pairs):
    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise SystemExit(f"vibeboard: --set expects NODE_ID.input=value, got '{pair}'")
        overrides[key] = _parse_value(value)
    return overrides


class ProgressPrinter:
    """One status line on a terminal, plain lines otherwise (logs, CI)."""

    def __init__(self, stream, prompt, registry, enabled=True):
        self.stream = stream
        self.prompt = prompt
        self.registry = registry
        self.enabled = enabled
        self.tty = stream.isatty()
        self.node = None
        self.done = 0
        self.total = len(prompt)
        self._last = 0.0

    def _title(self, node_id):
        node = self.prompt.get(node_id, {})
        title = (node.get("_meta") or {}).get("title") or self.registry.display_name(node.get("class_type", "?"))
        return f"#{node_id} {title}"

    def __call__(self, event, data):
        if not self.enabled:
            return
        if event == "executing" and data.get("node") is not None:
            self.node = data["node"]
            self.done += 1
            self._line(f"[{self.done}/{self.total}] {self._title(self.node)}", force=True)
        elif event == "execution_cached" and data.get("nodes"):
            self.done += len(data["nodes"])
            self._line(f"cached: {len(data['nodes'])} node(s)", force=True)
        elif event == "progress":
            value, total = data["value"], max(data["max"], 1)
            width = 24
            filled = int(width * value / total)
            bar = "█" * filled + "·" * (width - filled)
            self._line(f"[{self.done}/{self.total}] {self._title(data['node'])} {bar} {value}/{total}")
        elif event == "executing" and data.get("node") is None and self.tty:
            self.stream.write("\n")

    def _line(self, text, force=False):
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif force or now - self._last > 2.0:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now


def _load(args, registry):
    from .workflow import WorkflowFormatError, apply_overrides, load_workflow
    try:
        prompt = load_workflow(args.workflow, registry)
        return apply_overrides(prompt, parse_overrides(getattr(args, "set", None)))
    except WorkflowFormatError as exc:
        print(f"vibeboard: cannot read workflow {args.workflow}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def cmd_run(args) -> int:
    if getattr(args, "backend", "embedded") == "comfyui":
        if not args.url:
            raise SystemExit("vibeboard: --backend comfyui needs --url http://host:8188")
        return _run_remote(args)
    from .executor import Executor
    from .registry import NodeRegistry
    registry = NodeRegistry.default(embedded=True)
    prompt = _load(args, registry)
    from vibeboard.common import sample_inputs
    sample_inputs.ensure(os.path.abspath(args.input_dir))
    executor = Executor(registry, output_dir=args.output_dir, input_dir=args.input_dir,
                        temp_dir=args.temp_dir, models_dir=args.models_dir)
    printer = ProgressPrinter(sys.stderr, prompt, registry, enabled=not args.quiet)
    box = {}

    def work():
        try:
            box["result"] = executor.execute(prompt, on_event=printer)
        except BaseException as exc:  # an executor/host failure must still end in a message and exit code
            box["crash"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.2)
    except KeyboardInterrupt:
        print("\nvibeboard: interrupting (finishing the current step)…", file=sys.stderr)
        executor.interrupt()
        worker.join()
    if "result" not in box:
        exc = box.get("crash")
        print(f"vibeboard: the run crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    result = box["result"]
    code = report(result, registry, args.json)
    if getattr(args, "push", False):
        _push(result, args)
    return code


def _run_remote(args) -> int:
    """`vibeboard run --backend comfyui --url URL`: load (UI format via the remote's /object_info), run, report."""
    import urllib.error
    from .remote_comfyui import RemoteComfyUI, RemoteError, RemoteRegistry
    remote = RemoteComfyUI(args.url, token=getattr(args, "token", None))
    try:
        registry = RemoteRegistry(remote.object_info())
        prompt = _load(args, registry)
        printer = ProgressPrinter(sys.stderr, prompt, registry, enabled=not args.quiet)
        result = remote.run(prompt, args.output_dir, on_event=printer)
    except (RemoteError, urllib.error.URLError, OSError) as exc:
        print(f"vibeboard: remote server {args.url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    code = report(result, registry, args.json)
    if getattr(args, "push", False):
        _push(result, args)
    return code


def _push(result, args) -> list:
    """`vibeboard run --push`: push a finished run's files with the env/config storage; print the URLs."""
    from .state import default_store_dir
    from .storage import storage_from_config
    from .upload_journal import open_state_journal, push_outputs_journalled
    storage = storage_from_config(default_local_root=default_store_dir(args.output_dir))
    # keys journalled in the state folder while they upload: a run killed mid-push leaves no multipart upload
    # open past the next `vibeboard run --push` (or any pusher) on that state folder
    with open_state_journal(args.output_dir, storage) as journal:
        rows = push_outputs_journalled(storage, result.prompt_id, result.output_files(), journal)
    for row in rows:
        text = row.get("url") or f"FAILED {row.get('filename')}: {row.get('upload_error')}"
        print(f"pushed: {text}", file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    return rows


def report(result, registry, as_json: bool) -> int:
    files = result.output_files()
    code = {"success": EXIT_OK, "invalid": EXIT_INVALID, "interrupted": EXIT_INTERRUPTED}.get(
        result.status, EXIT_FAILED)
    if as_json:
        payload = {"status": result.status, "prompt_id": result.prompt_id, "outputs": result.outputs,
                   "files": files, "timings": result.timings, "executed": result.executed,
                   "cached": result.cached, "error": result.error, "seconds": round(result.total_seconds, 4)}
        print(json.dumps(payload, indent=2, default=str))
        return code
    out = sys.stdout
    if result.status == "invalid":
        print("Workflow is not valid:\n" + result.validation_summary, file=sys.stderr)
        return code
    if result.status == "error":
        err = result.error or {}
        print(f"Failed at node {err.get('node_id')} ({err.get('node_type')}): "
              f"{err.get('exception_message', 'no error details')}", file=sys.stderr)
    if result.status == "interrupted":
        print("Interrupted.", file=sys.stderr)
    rows = [(nid, result.prompt[nid]["class_type"], f"{secs:.3f}s") for nid, secs in result.timings.items()]
    if rows:
        print("node  class                              time", file=out)
        for nid, cls, secs in rows:
            print(f"{nid:<5} {cls:<34} {secs}", file=out)
    print(f"{len(result.executed)} executed, {len(result.cached)} cached, "
          f"{result.total_seconds:.2f}s total", file=out)
    for item in files:
        print(f"output: {_shown_path(item['path'])}  (node {item['node']}, {item['type']})", file=out)
    return code


def _shown_path(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # Windows: on another drive than the current folder
        return path


def cmd_validate(args) -> int:
    from .registry import NodeRegistry
    from .validation import validate_prompt
    from vibeboard.common import runtime, sample_inputs
    registry = NodeRegistry.default(embedded=True)
    prompt = _load(args, registry)
    runtime.set_host_dirs(input=os.path.abspath(args.input_dir))
    sample_inputs.ensure(os.path.abspath(args.input_dir))  # the shipped workflows' sample pictures
    result = validate_prompt(prompt, registry)
    if args.json:
        print(json.dumps({"ok": result.ok, **result.response(), "outputs": result.good_outputs}, indent=2))
    elif result.ok:
        note = f" ({len(result.node_errors)} node(s) with errors ignored)" if result.node_errors else ""
        print(f"ok: {len(prompt)} nodes, outputs {', '.join(result.good_outputs)}{note}")
        if result.node_errors:
            print(result.summary())
        from vibeboard.models import preflight
        missing = preflight.missing(prompt, result.good_outputs)
        if missing:  # the graph is valid; a run stops before its first node until these are there
            print(f"model files not here yet ({len(missing)}); `vibeboard run` needs them:\n  "
                  + "\n  ".join(preflight.describe(i) for i in missing))
    else:
        print("Workflow is not valid:\n" + result.summary(), file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_INVALID


def cmd_nodes(args) -> int:
    from .registry import NodeRegistry
    registry = NodeRegistry.default(embedded=not args.pack_only)
    info = registry.object_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    for name, node in info.items():
        print(f"{name:<32} {node['category']:<32} {node['display_name']}")
    import vibeboard
    for module, error in vibeboard.IMPORT_ERRORS.items():
        print(f"warning: module {module} failed to import: {error}", file=sys.stderr)
    return EXIT_OK


def cmd_convert(args) -> int:
    from .registry import NodeRegistry
    from .ui_export import api_to_ui
    registry = NodeRegistry.default(embedded=True)
    prompt = _load(args, registry)
    data = api_to_ui(prompt, registry) if args.to == "ui" else prompt
    text = json.dumps(data, indent=2) + "\n"
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _add_run_dirs(parser):
    parser.add_argument("--output-dir", default=os.environ.get("VIBEBOARD_OUTPUT_DIR", "output"))
    parser.add_argument("--input-dir", default=os.environ.get("VIBEBOARD_INPUT_DIR", "input"))
    parser.add_argument("--temp-dir", default=os.environ.get("VIBEBOARD_TEMP_DIR", "temp"))
    parser.add_argument("--models-dir", default=os.environ.get("VIBEBOARD_MODELS_DIR"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vibeboard", description="VibeBoard headless runner")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a workflow (API or UI format JSON)")
    run.add_argument("workflow")
    run.add_argument("--set", action="append", metavar="NODE_ID.input=value",
                     help="override a constant input (value parsed as JSON when it can be)")
    _add_run_dirs(run)
    run.add_argument("--json", action="store_true", help="print a JSON result on stdout")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--backend", choices=["embedded", "comfyui"], default="embedded",
                     help="embedded executor (default) or a remote ComfyUI server (--url)")
    run.add_argument("--url", default=os.environ.get("VIBEBOARD_COMFYUI_URL"),
                     help="remote ComfyUI (or vibeboard serve) base URL for --backend comfyui")
    run.add_argument("--token", default=os.environ.get("VIBEBOARD_REMOTE_TOKEN"),
                     help="bearer token for the remote server")
    run.add_argument("--push", action="store_true",
                     help="push outputs to the configured storage (VIBEBOARD_S3_* / VIBEBOARD_STORE_DIR)")
    run.set_defaults(func=cmd_run)
    val = sub.add_parser("validate", help="check a workflow without running it")
    val.add_argument("workflow")
    val.add_argument("--set", action="append", metavar="NODE_ID.input=value")
    val.add_argument("--json", action="store_true")
    val.add_argument("--input-dir", default=os.environ.get("VIBEBOARD_INPUT_DIR", "input"),
                     help="input folder LoadImage names are checked in (the sample inputs are put there)")
    val.set_defaults(func=cmd_validate)
    nodes = sub.add_parser("nodes", help="list nodes (--json: the /object_info shape)")
    nodes.add_argument("--json", action="store_true")
    nodes.add_argument("--pack-only", action="store_true", help="without the embedded core nodes")
    nodes.set_defaults(func=cmd_nodes)
    conv = sub.add_parser("convert", help="convert a workflow between UI and API format")
    conv.add_argument("workflow")
    conv.add_argument("--to", choices=["api", "ui"], default="api")
    conv.add_argument("-o", "--output", help="file to write (default: stdout)")
    conv.set_defaults(func=cmd_convert, set=None)
    _register_plugins(sub)
    return parser


def _register_plugins(sub):
    """Other commands live in vibeboard_runner/cli_<name>.py modules exposing register(subparsers)."""
    package = os.path.dirname(os.path.abspath(__file__))
    for info in sorted(pkgutil.iter_modules([package]), key=lambda m: m.name):
        if info.name.startswith("cli_"):
            module = importlib.import_module(f"{__package__}.{info.name}")
            module.register(sub)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (print(exc.code, file=sys.stderr) or EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
