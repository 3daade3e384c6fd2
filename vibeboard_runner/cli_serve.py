"""`vibeboard serve`: the ComfyUI-compatible server with persistent queue, output push and webhooks."""
from __future__ import annotations

import logging
import os


def _env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="serve the ComfyUI HTTP/WS API (+ /vibeboard/jobs) on this machine")
    serve.add_argument("--host", default=os.environ.get("VIBEBOARD_HOST", "127.0.0.1"),
                       help="address to bind (a non-loopback address requires --token)")
    serve.add_argument("--port", type=int, default=_env_int("VIBEBOARD_PORT", 8188))
    serve.add_argument("--token", default=os.environ.get("VIBEBOARD_TOKEN"),
                       help="bearer token clients must send (env VIBEBOARD_TOKEN)")
    serve.add_argument("--output-dir", default=os.environ.get("VIBEBOARD_OUTPUT_DIR", "output"))
    serve.add_argument("--input-dir", default=os.environ.get("VIBEBOARD_INPUT_DIR", "input"))
    serve.add_argument("--temp-dir", default=os.environ.get("VIBEBOARD_TEMP_DIR", "temp"))
    serve.add_argument("--models-dir", default=os.environ.get("VIBEBOARD_MODELS_DIR"))
    serve.add_argument("--db", default=os.environ.get("VIBEBOARD_DB"),
                       help="SQLite queue/history file (default: vibeboard-jobs.sqlite in the state folder, "
                            "VIBEBOARD_STATE_DIR or state/ next to the output folder)")
    serve.add_argument("--config", default=os.environ.get("VIBEBOARD_CONFIG"),
                       help="JSON config file (storage/webhook/limits sections; env variables win)")
    serve.add_argument("--storage", choices=["local", "s3", "r2", "none"], default=None,
                       help="where outputs are pushed (default: s3 when VIBEBOARD_S3_BUCKET is set, else local)")
    serve.add_argument("--store-dir", default=None, help="folder for --storage local (VIBEBOARD_STORE_DIR)")
    serve.add_argument("--webhook-secret", default=os.environ.get("VIBEBOARD_WEBHOOK_SECRET"))
    serve.add_argument("--webhook-url", default=os.environ.get("VIBEBOARD_WEBHOOK_URL"),
                       help="default webhook for every job (jobs may name their own)")
    serve.add_argument("--max-upload-mb", type=float, default=float(os.environ.get("VIBEBOARD_MAX_UPLOAD_MB", 100)))
    serve.add_argument("--max-prompt-mb", type=float, default=float(os.environ.get("VIBEBOARD_MAX_PROMPT_MB", 20)))
    serve.add_argument("--max-json-depth", type=int, default=_env_int("VIBEBOARD_MAX_JSON_DEPTH", 64))
    serve.add_argument("--no-url-inputs", action="store_true",
                       default=os.environ.get("VIBEBOARD_URL_INPUTS", "1") in ("0", "false", "no"),
                       help="refuse job inputs given by URL (the server would fetch them)")
    serve.add_argument("--allow-any-path", action="store_true",
                       default=os.environ.get("VIBEBOARD_ALLOW_ANY_PATH", "0") in ("1", "true", "yes"),
                       help="let file paths typed into nodes point outside the server's input/output/temp/models "
                            "folders (only for trusted clients)")
    serve.add_argument("--allow-private-urls", action="store_true",
                       default=os.environ.get("VIBEBOARD_ALLOW_PRIVATE_URLS", "0") in ("1", "true", "yes"),
                       help="let URL inputs and webhooks reach private/loopback addresses when bound to a public "
                            "interface (always allowed on loopback)")
    serve.add_argument("--allowed-host", action="append",
                       default=[h for h in os.environ.get("VIBEBOARD_ALLOWED_HOSTS", "").split(",") if h.strip()],
                       help="a Host name served without a token besides loopback ones (repeatable; e.g. a name in "
                            "/etc/hosts for 127.0.0.1). Other Host names get 403, which stops DNS rebinding")
    serve.add_argument("--push-temp", action="store_true",
                       default=os.environ.get("VIBEBOARD_PUSH_TEMP", "0") in ("1", "true", "yes"),
                       help="also push temp files (previews) to storage")
    serve.add_argument("--cache", default=os.environ.get("VIBEBOARD_CACHE", "classic"),
                       help="executor cache: classic | none | N (LRU of N node results)")
    serve.add_argument("--extra-nodes", action="append", default=[],
                       help="extra .py file or package with NODE_CLASS_MAPPINGS to register (repeatable)")
    serve.add_argument("--front-end-root", default=os.environ.get("VIBEBOARD_FRONT_END_ROOT"),
                       help="serve another built ComfyUI frontend at / (a folder with index.html, e.g. the static/ "
                            "of another comfyui-frontend-package version), as ComfyUI's --front-end-root")
    serve.add_argument("--log-level", default=os.environ.get("VIBEBOARD_LOG_LEVEL", "WARNING"))
    serve.add_argument("--farm", metavar="ADDRESS", default=os.environ.get("VIBEBOARD_FARM"),
                       help="run prompts on a render farm: Temporal host:port (docs/farm.md; needs vibeboard[farm])")
    serve.set_defaults(func=cmd_serve)


def build_config(args):
    from .server import ServerConfig
    from .storage import load_config_file, storage_from_args
    config_file = load_config_file(args.config)
    storage = storage_from_args(args, config_file)
    hooks = config_file.get("webhook") or {}
    limits = config_file.get("limits") or {}
    cache = args.cache
    cache = int(cache) if str(cache).isdigit() else cache
    return ServerConfig(
        host=args.host, port=args.port, token=args.token if args.token is not None else config_file.get("token"),
        allowed_hosts=list(args.allowed_host),
        output_dir=args.output_dir, input_dir=args.input_dir, temp_dir=args.temp_dir, db_path=args.db,
        storage=storage, webhook_secret=args.webhook_secret or hooks.get("secret"),
        default_webhook=args.webhook_url or hooks.get("url"),
        max_upload_bytes=int(limits.get("max_upload_mb", args.max_upload_mb) * 1024 * 1024),
        max_prompt_bytes=int(limits.get("max_prompt_mb", args.max_prompt_mb) * 1024 * 1024),
        max_json_depth=int(limits.get("max_json_depth", args.max_json_depth)),
        allow_url_inputs=not args.no_url_inputs, allow_any_path=args.allow_any_path,
        allow_private_urls=True if args.allow_private_urls else None, extra_nodes=list(args.extra_nodes), cache=cache,
        models_dir=args.models_dir, push_temp=args.push_temp,
        # fault tolerance knobs (docs/service.md "Faults"); environment only
        upload_workers=_env_int("VIBEBOARD_UPLOAD_WORKERS", 2),
        upload_timeout_s=float(os.environ.get("VIBEBOARD_UPLOAD_TIMEOUT_S") or 900),
        worker_stuck_s=float(os.environ.get("VIBEBOARD_WORKER_STUCK_S") or 1800),
        history_page_limit=_env_int("VIBEBOARD_HISTORY_PAGE_LIMIT", 1000), front_end_root=args.front_end_root)


def cmd_serve(args) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .security import check_bind_allowed
    config = build_config(args)  # the token may come from --config
    check_bind_allowed(config.host, config.token)  # before loading nodes: fail fast
    from .server import VibeServer
    server = VibeServer(config)
    if args.farm:  # same API in front; prompts become Temporal workflows run by `vibeboard worker` pods
        from .farm.front import attach_farm
        attach_farm(server, args.farm)
    server.serve_forever()
    return 0
