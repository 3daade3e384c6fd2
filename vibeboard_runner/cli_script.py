"""`vibeboard script breakdown|export|stripboard` and `vibeboard direct` (auto-registered by vibeboard_runner/cli.py)."""
from __future__ import annotations

import json
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 4, 2


def register(subparsers) -> None:
    script = subparsers.add_parser("script", help="Script Lab: screenplay breakdown into the asset DB")
    ssub = script.add_subparsers(dest="script_command", required=True)
    p = ssub.add_parser("breakdown", help="break a screenplay down (scenes, cast, elements) into the asset DB")
    p.add_argument("file", help=".fountain, .fdx or .txt screenplay")
    p.add_argument("--db", default=os.environ.get("VIBEBOARD_ASSET_DB", "vibeboard_assets.vbdb"),
                   help="asset database file (default: VIBEBOARD_ASSET_DB or ./vibeboard_assets.vbdb)")
    p.add_argument("--parser", default="fountain-py", choices=["fountain-py", "screenplay-tools"])
    p.add_argument("--json", action="store_true", help="print the breakdown as JSON")
    _llm_args(p)
    p.set_defaults(func=cmd_breakdown)
    p = ssub.add_parser("export", help="export the latest breakdown: json, csv, xlsx, fdx, shot_list")
    p.add_argument("format", choices=["json", "csv", "xlsx", "fdx", "shot_list"])
    p.add_argument("--db", default=os.environ.get("VIBEBOARD_ASSET_DB", "vibeboard_assets.vbdb"))
    p.add_argument("-o", "--output", help="file to write (default: stdout; xlsx needs -o)")
    p.set_defaults(func=cmd_export)
    p = ssub.add_parser("stripboard", help="render plan: scenes grouped to minimise model swaps, GPU-minutes, cost")
    p.add_argument("--db", default=os.environ.get("VIBEBOARD_ASSET_DB", "vibeboard_assets.vbdb"))
    p.add_argument("--usd-per-gpu-hour", type=float)
    p.set_defaults(func=cmd_stripboard)
    d = subparsers.add_parser("direct", help="DirectorAgent: a request in words → the workflow and its parameters")
    d.add_argument("request")
    d.add_argument("--selection", help='JSON context, e.g. {"clip": "shot12.mp4", "shot": "12"}')
    d.add_argument("--json", action="store_true")
    d.add_argument("--dry-run", action="store_true",
                   help="compile the route into its saved workflow and validate it (nothing is queued)")
    _llm_args(d)
    d.set_defaults(func=cmd_direct)


def _llm_args(p):
    p.add_argument("--llm", choices=["openai", "anthropic"], help="use an LLM endpoint of this protocol")
    p.add_argument("--llm-base-url", default=os.environ.get("VIBEBOARD_LLM_BASE_URL", "https://api.minimax.io/v1"))
    p.add_argument("--llm-model", default=os.environ.get("VIBEBOARD_LLM_MODEL", "MiniMax-M2.1"))
    p.add_argument("--llm-key-env", default="MINIMAX_API_KEY", help="name of the env var holding the API key")


def _provider(args):
    if not getattr(args, "llm", None):
        return None
    from vibeboard.llm import LLMConfig
    return LLMConfig(protocol=args.llm, base_url=args.llm_base_url, model=args.llm_model,
                     api_key_env=args.llm_key_env).provider()


def _pack_on_path():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    nodes = os.path.join(root, "custom_nodes")
    if nodes not in sys.path:
        sys.path.insert(0, nodes)


def cmd_breakdown(args) -> int:
    _pack_on_path()
    from vibeboard.assetdb import AssetDB
    from vibeboard.scriptlab import exports, pipeline
    if not os.path.isfile(args.file):
        print(f"vibeboard script: no such file: {args.file}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = pipeline.run_breakdown(args.file, args.db, parser=args.parser, llm=_provider(args))
    except ValueError as exc:
        print(f"vibeboard script: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    with AssetDB(args.db) as db:
        if args.json:
            sys.stdout.write(exports.dumps(exports.to_json(db, result["revision_id"])))
        else:
            sys.stdout.write(pipeline.summary(db, result["revision_id"]))
            print(f"asset DB: {args.db}")
    llm = result["llm"]
    if llm.get("used"):
        if llm["status"].startswith("rejected"):
            print(f"vibeboard script: the LLM pass failed and stored nothing (the rules' breakdown is stored): "
                  f"{llm['status']}", file=sys.stderr)
            return EXIT_FAILED
        print(f"LLM: {llm['accepted_proposals']} proposal(s) stored for review ({llm['status']})", file=sys.stderr)
    return EXIT_OK


def cmd_export(args) -> int:
    _pack_on_path()
    from vibeboard.assetdb import AssetDB
    from vibeboard.scriptlab import exports
    from vibeboard.scriptlab.nodes import _stored_screenplay
    if not os.path.isfile(args.db):
        print(f"vibeboard script: no asset DB at {args.db} (run `vibeboard script breakdown` first)", file=sys.stderr)
        return EXIT_USAGE
    with AssetDB(args.db) as db:
        rev = db.latest_revision()
        if rev is None:
            print(f"vibeboard script: {args.db} has no script yet", file=sys.stderr)
            return EXIT_USAGE
        if args.format == "xlsx":
            if not args.output:
                print("vibeboard script: xlsx needs -o FILE", file=sys.stderr)
                return EXIT_USAGE
            exports.to_xlsx(db, args.output, rev["id"])
            print(f"wrote {args.output}")
            return EXIT_OK
        data = {"json": lambda: exports.dumps(exports.to_json(db, rev["id"])),
                "csv": lambda: exports.to_csv(db, rev["id"]),
                "shot_list": lambda: exports.dumps(exports.shot_list(db, rev["id"])),
                "fdx": lambda: exports.to_fdx(_stored_screenplay(db, rev["id"]), db.tags(rev["id"]))}[args.format]()
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as handle:
            handle.write(data)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(data)
    return EXIT_OK


def cmd_stripboard(args) -> int:
    _pack_on_path()
    from vibeboard.assetdb import AssetDB
    from vibeboard.scriptlab import exports, stripboard
    costs = stripboard.load_costs()
    if args.usd_per_gpu_hour is not None:
        costs["usd_per_gpu_hour"] = args.usd_per_gpu_hour
    with AssetDB(args.db) as db:
        sys.stdout.write(exports.dumps(stripboard.build(db, costs=costs)))
    return EXIT_OK


def cmd_direct(args) -> int:
    _pack_on_path()
    from vibeboard.scriptlab import director
    selection = json.loads(args.selection) if args.selection else {}
    decision = director.DirectorAgent(llm=_provider(args)).route(args.request, selection=selection)
    out = decision.to_dict()
    if args.dry_run:
        out["dry_run"] = compile_decision(decision)
    if args.json:
        print(json.dumps(out, indent=2))
        return EXIT_OK
    if args.dry_run:
        dry = out["dry_run"]
        print(f"dry run: {dry['status']} — {dry['message']}")
        for line in dry.get("set", []):
            print(f"  set {line}")
    if decision.question:
        print(f"question: {decision.question}")
    else:
        print(f"{decision.workflow}  (module {decision.module}, via {decision.via}, margin {decision.margin:.2f})")
        for k, v in decision.params.items():
            print(f"  {k} = {v}")
    return EXIT_OK


def compile_decision(decision) -> dict:
    """Fill the route's saved workflow with its parameters (the card's `binds`) and validate it."""
    from vibeboard.scriptlab.director_cards import BY_ID
    from .registry import NodeRegistry
    from .validation import validate_prompt
    from .workflow import WorkflowFormatError, load_workflow
    if decision.question and decision.missing:
        return {"status": "needs_input", "message": decision.question}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, decision.workflow_file)
    if not decision.installed or not os.path.isfile(path):
        return {"status": "not_installed", "message": f"{decision.workflow_file} is not in this checkout yet "
                f"({decision.module} not built)"}
    registry = NodeRegistry.default(embedded=True)
    try:
        prompt = load_workflow(path, registry)
    except WorkflowFormatError as exc:
        return {"status": "invalid", "message": str(exc)}
    changed = []
    for param, targets in BY_ID[decision.workflow].get("binds", {}).items():
        if param not in decision.params:
            continue
        for class_type, input_name, mapping in targets:
            value = mapping[decision.params[param]] if mapping else decision.params[param]
            for node_id, node in prompt.items():
                if node["class_type"] == class_type and input_name in node.get("inputs", {}):
                    node["inputs"][input_name] = value
                    changed.append(f"{node_id}.{input_name} = {value!r}")
    result = validate_prompt(prompt, registry)
    return {"status": "ok" if result.ok else "invalid", "set": changed, "prompt": prompt,
            "message": "valid; would run " + ", ".join(sorted({n["class_type"] for n in prompt.values()}))
            if result.ok else result.summary()}
