"""ComfyUI-compatible HTTP/WS server on the embedded executor (aiohttp), plus VibeBoard job endpoints.

Routes follow ComfyUI's server.py (same paths, same JSON shapes) and are mirrored under /api/. See
docs/service.md for the security model (token, path checks, limits) and the job endpoints.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import os
import platform
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

from aiohttp import web

from .jobstore import JobStore
from .security import (ApiError, check_bind_allowed, check_graph, parse_json, redacted_argv, register_secrets,
                       require_strict_json)
from .server_auth import auth_middleware, errors_middleware  # who may call; errors as ComfyUI's JSON
from .server_files import file_routes  # /view, /upload/image
from .server_history import clear_or_delete, history_routes  # /history
from .service import JobService
from .storage import Storage
from .webhooks import WebhookSender
from .ws_hub import WsHub

log = logging.getLogger("vibeboard.server")

VERSION = "0.1.0"
# The pack's WEB_DIRECTORY (see the repo root __init__.py), served like ComfyUI serves a pack's JS.
WEB_EXTENSION_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "js")
SECRET_EXTRA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8188
    token: Optional[str] = None
    allowed_hosts: list = field(default_factory=list)  # Host names served without a token besides loopback ones
    output_dir: str = "output"
    input_dir: str = "input"
    temp_dir: str = "temp"
    db_path: Optional[str] = None  # default: the state folder (vibeboard_runner/state.py)
    storage: Optional[Storage] = None
    webhook_secret: Optional[str] = None
    default_webhook: Optional[str] = None
    webhook_attempts: int = 5
    webhook_backoff_s: float = 1.0
    max_upload_bytes: int = 100 * 1024 * 1024
    max_prompt_bytes: int = 20 * 1024 * 1024
    max_json_depth: int = 64
    max_nodes: int = 5000
    allow_url_inputs: bool = True
    max_url_input_bytes: int = 200 * 1024 * 1024
    extra_nodes: list = field(default_factory=list)
    cache: object = "classic"
    models_dir: Optional[str] = None
    push_temp: bool = False  # also push "temp" files (previews); off like ComfyUI workers
    allow_any_path: bool = False  # file paths typed into nodes may point anywhere (trusted clients only)
    allow_private_urls: Optional[bool] = None  # URL inputs / webhooks to private hosts; default: only on loopback
    worker_stuck_s: float = 1800.0  # health reports the GPU worker stuck after a running job is silent this long
    upload_workers: int = 2  # threads pushing outputs to storage (never the GPU worker)
    upload_timeout_s: float = 900.0  # per job; files not pushed by then get an upload_error
    history_page_limit: int = 1000  # most /history entries in one response (more via the cursor header)
    front_end_root: Optional[str] = None  # another built frontend to serve at / (default: the installed package)


class VibeServer:
    def __init__(self, config: ServerConfig, registry=None, executor=None):
        check_bind_allowed(config.host, config.token)
        if config.front_end_root:  # a wrong folder stops the start, not every page load
            from .frontend import check_front_end_root
            config.front_end_root = check_front_end_root(config.front_end_root)
        register_secrets(config.token, config.webhook_secret)  # never echoed (e.g. /system_stats argv)
        self.config = config
        for path in (config.output_dir, config.input_dir, config.temp_dir):
            os.makedirs(path, exist_ok=True)
        self.dirs = {"output": os.path.abspath(config.output_dir), "input": os.path.abspath(config.input_dir),
                     "temp": os.path.abspath(config.temp_dir)}
        if registry is None:
            from .registry import NodeRegistry
            registry = NodeRegistry.default(embedded=True)
        for path in config.extra_nodes:
            load_extra_nodes(registry, path)
        self.registry = registry
        # Workflows come from clients: file inputs stay inside the server's folders unless told otherwise.
        # An exposed server must not fetch from (or post to) the pod's private network for its clients.
        # Both apply to this server's calls only (passed per call), never process-wide.
        from .security import is_loopback
        self.restrict_paths = not config.allow_any_path
        allow_private = config.allow_private_urls
        self.allow_private = is_loopback(config.host) if allow_private is None else bool(allow_private)
        if executor is None:
            from .executor import Executor
            executor = Executor(registry, output_dir=self.dirs["output"], input_dir=self.dirs["input"],
                                temp_dir=self.dirs["temp"], models_dir=config.models_dir,
                                cache=config.cache, restrict_paths=self.restrict_paths)
        elif getattr(executor, "restrict_paths", False) is None:
            executor.restrict_paths = self.restrict_paths
        self.executor = executor
        from .state import default_db_path
        db_path = config.db_path or default_db_path(self.dirs["output"])
        self.store = JobStore(db_path)
        self.hub = WsHub()
        # SQLite and big JSON run here, never on the event loop: one slow query must not stall every client.
        self._blocking = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vibeboard-io")
        self.webhooks = WebhookSender(config.webhook_secret, max_attempts=config.webhook_attempts,
                                      backoff_s=config.webhook_backoff_s, db_path=db_path,
                                      allow_private=self.allow_private)
        self.service = JobService(executor, self.store, self.dirs, storage=config.storage, webhooks=self.webhooks,
                                  emit=self.hub.emit, default_webhook=config.default_webhook,
                                  push_temp=config.push_temp, stuck_after_s=config.worker_stuck_s,
                                  upload_workers=config.upload_workers, upload_timeout_s=config.upload_timeout_s)
        self.app = self._build_app()
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.port = config.port

    # --- app -------------------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        from . import server_jobs
        limit = max(self.config.max_upload_bytes, self.config.max_prompt_bytes) + 1024 * 1024
        from .frontend import add_frontend_routes, cookie_auth_middleware  # the ComfyUI editor at / (frontend.py)
        app = web.Application(client_max_size=limit,  # errors → JSON; browser cookie → token; token/Host check
                              middlewares=[errors_middleware, cookie_auth_middleware(self), auth_middleware(self)])
        routes = [
            ("GET", "/prompt", self.get_prompt), ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue), ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt), ("POST", "/free", self.post_free),
            ("GET", "/object_info", self.get_object_info), ("GET", "/object_info/{node_class}", self.get_object_one),
            ("GET", "/system_stats", self.get_system_stats), ("GET", "/features", self.get_features),
            ("GET", "/embeddings", self.get_empty_list), ("GET", "/extensions", self.get_extensions),
            ("GET", "/ws", self.get_ws),
            ("POST", "/vibeboard/jobs", server_jobs.make_post_job(self)),
            ("GET", "/vibeboard/jobs/{job_id}", server_jobs.make_get_job(self)),
            ("GET", "/vibeboard/health", self.get_health),
        ] + history_routes(self) + file_routes(self)
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        from vibeboard.dailies.review_server import add_review_routes  # Dailies review page + its JSON API
        add_review_routes(app, self.dirs["output"], self.dirs.values())
        if os.path.isdir(WEB_EXTENSION_DIR):  # the pack's frontend widgets, as ComfyUI serves WEB_DIRECTORY
            app.router.add_static("/extensions/vibeboard/", WEB_EXTENSION_DIR)
        add_frontend_routes(app, self)  # last: it mounts the editor's static files at /
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app) -> None:
        await self.hub.start()
        self.service.start()

    async def _on_shutdown(self, app) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.service.stop)
        await self.hub.stop()
        self.webhooks.close(timeout_s=2.0)

    async def _json(self, request: web.Request, what: str = "request body"):
        raw = await request.read()
        if len(raw) > 65536:  # a multi-megabyte workflow is parsed off the loop
            return await self._off(parse_json, raw, self.config.max_prompt_bytes, self.config.max_json_depth, what)
        return parse_json(raw, self.config.max_prompt_bytes, self.config.max_json_depth, what)

    async def _off(self, fn, *args):
        """Run blocking work (SQLite, validation, downloads, big JSON) on the I/O pool, under this server's
        path and network policies, and await it."""
        return await asyncio.get_running_loop().run_in_executor(self._blocking, self._with_policies,
                                                                functools.partial(fn, *args))

    def _with_policies(self, call):
        from vibeboard.common import runtime
        from . import netpolicy
        with runtime.path_policy(self.restrict_paths), netpolicy.policy(self.allow_private):
            return call()

    async def _json_response(self, data, status: int = 200, headers: Optional[dict] = None) -> web.Response:
        text = await self._off(json.dumps, data)
        return web.Response(text=text, status=status, content_type="application/json", headers=headers)

    # --- prompt / queue --------------------------------------------------------------------------
    def prepare_prompt(self, prompt):
        """UI-format → API conversion and shape checks (links, cycles, size)."""
        from .workflow import WorkflowFormatError, is_ui_format, load_workflow
        if isinstance(prompt, dict) and is_ui_format(prompt):
            try:
                prompt = load_workflow(prompt, self.registry)
            except WorkflowFormatError as exc:
                raise ApiError(400, "invalid_workflow", str(exc))
        check_graph(prompt, self.config.max_nodes)
        return prompt

    def validate(self, prompt, partial_targets=None):
        from .validation import validate_prompt
        from vibeboard.common import runtime
        # VALIDATE_INPUTS of loaders look files up in the host folders: point them at ours before validating
        runtime.set_host_dirs(output=self.dirs["output"], input=self.dirs["input"], temp=self.dirs["temp"],
                              models=self.config.models_dir)
        result = validate_prompt(prompt, self.registry, partial_targets=partial_targets)
        if not result.ok:
            body = result.response()
            raise ApiError(400, body["error"].get("type", "invalid_prompt"), body["error"].get("message", ""),
                           body["error"].get("details", ""), body["error"].get("extra_info", {}),
                           body.get("node_errors", {}))
        require_strict_json(prompt, "prompt")  # numeric inputs were refused by name above; this is the rest
        return result

    async def get_prompt(self, request):
        return web.json_response({"exec_info": {"queue_remaining": await self._off(self.service.queue_remaining)}})

    async def post_prompt(self, request):
        body = await self._json(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "request body must be a JSON object with a 'prompt' key")
        if "prompt" not in body:
            raise ApiError(400, "no_prompt", "No prompt provided", "No prompt provided")
        prompt = self.prepare_prompt(body["prompt"])
        targets = body.get("partial_execution_targets")
        if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
            raise ApiError(400, "invalid_request", "partial_execution_targets must be a list of node ids")
        result = await self._off(self.validate, prompt, targets)
        extra = body.get("extra_data") or {}
        if not isinstance(extra, dict):
            raise ApiError(400, "invalid_request", "extra_data must be an object")
        extra = {k: v for k, v in extra.items() if k not in SECRET_EXTRA_KEYS}
        require_strict_json(extra, "extra_data")
        client_id = body.get("client_id")
        if client_id is not None and not isinstance(client_id, str):
            raise ApiError(400, "invalid_request", "client_id must be a string")
        prompt_id = await self._off(self._new_prompt_id, body.get("prompt_id"))
        number = body.get("number")
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))
                                   or abs(number) > 2 ** 53  # 10**400 cannot even become a float
                                   or not math.isfinite(number)):  # inf would break the queue on restart
            raise ApiError(400, "invalid_request", "number must be a finite number")
        job_id, number = await self._off(self.service.submit, prompt, extra, client_id, prompt_id, number,
                                         bool(body.get("front")), list(result.good_outputs))
        return web.json_response({"prompt_id": job_id, "number": number, "node_errors": result.node_errors})

    def _new_prompt_id(self, wanted) -> str:
        if wanted is None:
            return str(uuid.uuid4())
        if not isinstance(wanted, str) or not wanted or len(wanted) > 128:
            raise ApiError(400, "invalid_request", "prompt_id must be a non-empty string (≤ 128 characters)")
        if any(ch in "/\\" or ord(ch) < 32 or ord(ch) == 127 for ch in wanted):
            # ids appear in URL paths (/history/{id}, /vibeboard/jobs/{id}) and in storage keys
            raise ApiError(400, "invalid_request", "prompt_id / job_id must not contain '/', '\\' or control characters")
        if self.store.exists(wanted):
            raise ApiError(409, "duplicate_prompt_id", f"prompt_id {wanted!r} is already in use")
        return wanted

    async def get_queue(self, request):
        running = await self._off(self.store.by_status, "running")
        pending = await self._off(self.store.by_status, "queued")
        return await self._json_response({"queue_running": [j.queue_item for j in running],
                                          "queue_pending": [j.queue_item for j in pending]})

    async def post_queue(self, request):
        return await clear_or_delete(self, request, self.service.delete_queued)

    async def post_interrupt(self, request):
        raw = await request.read()
        prompt_id = None
        if raw.strip():
            body = parse_json(raw, self.config.max_prompt_bytes, self.config.max_json_depth)
            if isinstance(body, dict):
                prompt_id = body.get("prompt_id")
        self.service.interrupt(prompt_id)
        return web.Response(status=200)

    async def post_free(self, request):
        raw = await request.read()
        body = parse_json(raw, 65536, 8) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "POST /free expects a JSON object")
        if body.get("free_memory") or body.get("unload_models"):
            for name in ("free_memory", "reset_cache", "clear_cache"):
                method = getattr(self.executor, name, None)
                if callable(method):
                    method()
                    break
        # Models held by the VRAM manager: offloaded (free_memory) or dropped (unload_models), and the pack's caches.
        from vibeboard.models import release
        if not (body.get("free_memory") or body.get("unload_models")):
            return web.json_response({"freed_bytes": 0, "unloaded": [], "caches_cleared": []})
        return web.json_response(release.release_all(unload=bool(body.get("unload_models")),
                                                     free_memory=bool(body.get("free_memory"))))

    # --- nodes -----------------------------------------------------------------------------------
    async def get_object_info(self, request):
        return await self._json_response(self.registry.object_info())

    async def get_object_one(self, request):
        name = request.match_info["node_class"]
        if name not in self.registry.classes:
            return web.json_response({})
        return web.json_response({name: self.registry.node_info(name)})

    # --- misc ------------------------------------------------------------------------------------
    async def get_system_stats(self, request):
        stats = await self._off(system_stats)
        stats["worker"] = self.service.health()  # dead/stuck/failing GPU worker, as /vibeboard/health reports
        return web.json_response(stats)

    async def get_features(self, request):
        return web.json_response(self.features())

    def features(self) -> dict:
        return {"supports_preview_metadata": False, "max_upload_size": self.config.max_upload_bytes}

    async def get_extensions(self, request):
        """The pack's JS files, as URLs the ComfyUI frontend imports (GET /extensions)."""
        names = []
        if os.path.isdir(WEB_EXTENSION_DIR):
            for root, _dirs, files in os.walk(WEB_EXTENSION_DIR):
                for name in sorted(files):
                    if name.endswith(".js"):
                        rel = os.path.relpath(os.path.join(root, name), WEB_EXTENSION_DIR).replace(os.sep, "/")
                        names.append(f"/extensions/vibeboard/{rel}")
        return web.json_response(sorted(names))

    async def get_empty_list(self, request):
        return web.json_response([])

    async def get_health(self, request):
        """Load-balancer probe: 503 when the GPU worker is dead, stuck or failing (e.g. disk full)."""
        worker = self.service.health()
        try:
            remaining = await self._off(self.service.queue_remaining)
        except Exception as exc:  # the queue database itself is unreadable
            worker = dict(worker, ok=False, queue_error=f"{type(exc).__name__}: {exc}")
            remaining = None
        return web.json_response({"ok": worker["ok"], "queue_remaining": remaining, "worker": worker},
                                 status=200 if worker["ok"] else 503)

    async def get_ws(self, request):
        def on_connect(sid):
            running = self.service.running
            if running is not None and running.get("client_id") == sid and self.service.current_node:
                yield "executing", {"node": self.service.current_node, "display_node": self.service.current_node,
                                    "prompt_id": running["id"]}
        return await self.hub.handle(request, lambda: self._off(self.service.status_data), on_connect,
                                     self.features())

    # --- running ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        addresses = self._runner.addresses  # the real port when port 0 was asked for
        if addresses:
            self.port = addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.store.close()
        self._blocking.shutdown(wait=False)

    def start_in_thread(self, timeout_s: float = 30.0) -> "VibeServer":
        """Tests and the bench: serve from a background thread; returns once the port is bound."""
        ready = threading.Event()
        failure: list = []

        def main():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="vibeboard-server", daemon=True)
        self._thread.start()
        ready.wait(timeout_s)
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        async def main():
            import signal
            await self.start()
            log.warning("VibeBoard server on %s (token %s)", self.url, "on" if self.config.token else "off")
            print(f"VibeBoard server listening on {self.url}", flush=True)
            stop = asyncio.Event()
            try:  # SIGTERM (pods, systemd, docker stop): stop cleanly, the running job is recorded as interrupted
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
            try:
                await stop.wait()
            finally:
                await self.stop()
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass


def system_stats() -> dict:
    ram_total = ram_free = 0
    try:
        with open("/proc/meminfo") as handle:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in handle if ":" in line}
        ram_total, ram_free = info.get("MemTotal", 0), info.get("MemAvailable", 0)
    except OSError:
        pass
    devices, torch_version = [], ""
    try:
        import torch
        torch_version = torch.__version__
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                free, total = torch.cuda.mem_get_info(index)
                devices.append({"name": f"cuda:{index} {torch.cuda.get_device_name(index)}", "type": "cuda",
                                "index": index, "vram_total": total, "vram_free": free,
                                "torch_vram_total": torch.cuda.memory_reserved(index),
                                "torch_vram_free": torch.cuda.memory_reserved(index)
                                - torch.cuda.memory_allocated(index)})
        else:
            devices.append({"name": "cpu", "type": "cpu", "index": None, "vram_total": ram_total,
                            "vram_free": ram_free, "torch_vram_total": 0, "torch_vram_free": 0})
    except Exception:
        pass
    return {"system": {"os": os.name, "ram_total": ram_total, "ram_free": ram_free,
                       "comfyui_version": f"vibeboard-{VERSION}", "required_frontend_version": "",
                       "installed_templates_version": "", "required_templates_version": "",
                       "python_version": sys.version, "pytorch_version": torch_version,
                       "embedded_python": False, "argv": redacted_argv(sys.argv), "platform": platform.platform()},
            "devices": devices, "vibeboard": _model_stats()}


def _model_stats() -> dict:
    """What the VRAM manager holds (budget, models, tier), for pod dashboards."""
    try:
        from vibeboard.models import vram
        return vram.system_stats()
    except Exception as exc:  # stats must never break /system_stats
        return {"error": f"{type(exc).__name__}: {exc}"}


def load_extra_nodes(registry, path: str) -> None:
    """Add the NODE_CLASS_MAPPINGS of a .py file or package folder to the registry (e.g. a test node set)."""
    import importlib.util
    path = os.path.abspath(path)
    target = os.path.join(path, "__init__.py") if os.path.isdir(path) else path
    name = "vibeboard_extra_" + hashlib.sha1(path.encode()).hexdigest()[:10]
    spec = importlib.util.spec_from_file_location(name, target,
                                                  submodule_search_locations=[path] if os.path.isdir(path) else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if not mappings:
        raise SystemExit(f"{path}: no NODE_CLASS_MAPPINGS found")
    register = getattr(registry, "register", None)
    for class_name, cls in mappings.items():
        if callable(register):
            register(class_name, cls, display_name=getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}).get(class_name))
        else:
            registry.classes[class_name] = cls
