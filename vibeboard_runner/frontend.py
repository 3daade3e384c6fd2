"""ComfyUI's own graph editor on `vibeboard serve`: the official `comfyui-frontend-package` at `/` plus the routes it
calls at start-up and while editing (users, settings, userdata, i18n, model folders, templates, jobs, subgraphs).

Shapes follow ComfyUI's app/user_manager.py, app/app_settings.py, app/custom_node_manager.py and the frontend's
`src/scripts/api.ts` + `platform/remote/comfyui/jobs/jobTypes.ts`. Single-user mode as ComfyUI's default: every
request is user "default", whose files live in `<state dir>/user/default/` and never outside it.

Browser auth: a browser cannot add `Authorization` to its page, script and websocket loads, so opening
`/?token=<token>` once sets an HttpOnly SameSite=Strict cookie; `cookie_auth_middleware` turns that cookie into the
bearer header the server's single token check (security.token_ok) reads, only for same-origin requests.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.parse

from aiohttp import web

from .security import ApiError, resolve_inside, safe_relpath, token_ok

COOKIE = "vibeboard_token"
USER = "default"
PACK = "vibeboard"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Settings a fresh user starts with: the first-start template browser would cover the page (ComfyUI shows it
# until the tutorial is marked done); the user can change any of them from the settings dialog.
# ComfyUI's release notes do not describe this server, and a pod may have no internet: no version-update check.
DEFAULT_SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Notification.ShowVersionUpdates": False}
JOB_STATUS = {"queued": "pending", "running": "in_progress", "success": "completed", "error": "failed",
              "invalid": "failed", "interrupted": "cancelled"}
# Files the editor asks for on every load; ComfyUI answers 404 until the user makes them, we answer with the
# empty file so a fresh page shows no failed request.
DEFAULT_USER_FILES = {"user.css": ("text/css", b""), "comfy.templates.json": ("application/json", b"[]"),
                      "workflows/.index.json": ("application/json", b'{"favorites": []}')}
MEDIA_KEYS = ("images", "video", "videos", "gifs", "audio", "animated")


def frontend_static_dir(front_end_root=None):
    """The editor's static folder: `front_end_root` (`vibeboard serve --front-end-root`, as ComfyUI's flag: a
    built frontend folder holding index.html, e.g. another comfyui-frontend-package's static/), else the
    installed package's, else None (then `/` explains how to install it)."""
    if front_end_root:
        return check_front_end_root(front_end_root)
    try:
        import comfyui_frontend_package
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(comfyui_frontend_package.__file__), "static")
    return path if os.path.isfile(os.path.join(path, "index.html")) else None


def check_front_end_root(path: str) -> str:
    """The absolute folder, or ValueError saying what is wrong with it (checked when the server starts)."""
    folder = os.path.abspath(os.path.expanduser(path))
    if os.path.isfile(os.path.join(folder, "static", "index.html")):
        folder = os.path.join(folder, "static")  # the package folder itself was given
    if not os.path.isfile(os.path.join(folder, "index.html")):
        raise ValueError(f"--front-end-root {path}: no index.html there (give a built ComfyUI frontend folder, "
                         "e.g. .../comfyui_frontend_package/static)")
    return folder


def frontend_version():
    try:
        from importlib.metadata import version
        return version("comfyui-frontend-package")
    except Exception:
        return ""


def templates_dir() -> str:
    """The pack's templates (ComfyUI's convention: example_workflows/), else the module workflows' UI files."""
    folder = os.path.join(ROOT, "example_workflows")
    return folder if os.path.isdir(folder) else os.path.join(ROOT, "workflows")


def template_names() -> list:
    folder = templates_dir()
    return sorted(n[:-5] for n in os.listdir(folder) if n.endswith(".json") and not n.endswith(".api.json"))


def with_credentialed_manifest(page: str) -> str:
    """Browsers fetch a web-app manifest without cookies unless the link says use-credentials (frontends before
    1.5x do not): without it the token cookie is not sent and the manifest gets a 401."""
    def fix(match):
        tag = match.group(0)
        return tag if "crossorigin" in tag else tag.replace("<link ", '<link crossorigin="use-credentials" ', 1)
    return re.sub(r"<link[^>]*rel=\"manifest\"[^>]*>", fix, page)


# --- auth ------------------------------------------------------------------------------------------

def cookie_auth_middleware(server):
    """Let a browser that logged in with ?token= reach the page and its routes through a cookie."""
    @web.middleware
    async def middleware(request, handler):
        token = server.config.token
        if not token:
            return await handler(request)
        if request.method == "GET" and request.path == "/" and "token" in request.query:
            if not token_ok(token, {}, request.query, allow_query=True):
                raise ApiError(401, "unauthorized", "wrong token in ?token=")
            response = web.HTTPFound("/")  # the token leaves the address bar and the history
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/",
                                secure=request.secure)
            raise response
        cookie = request.cookies.get(COOKIE)
        if cookie and "Authorization" not in request.headers and _same_origin(request):
            headers = request.headers.copy()
            headers["Authorization"] = f"Bearer {cookie}"
            request = request.clone(headers=headers)
        if request.method == "GET" and request.path == "/" and not token_ok(token, request.headers, {}, False):
            return web.Response(status=401, content_type="text/html", text=LOGIN_HINT)  # a person, not a client
        return await handler(request)
    return middleware


LOGIN_HINT = ("<!doctype html><title>VibeBoard</title><h1>VibeBoard</h1><p>This server needs its token: open "
              "<code>/?token=&lt;token&gt;</code> once (the token given to <code>vibeboard serve --token</code> "
              "or VIBEBOARD_TOKEN); the browser then keeps a cookie for this site.</p>")


def _same_origin(request) -> bool:
    """A cookie is sent by the browser whatever page asks; only the editor's own pages may use it."""
    origin = request.headers.get("Origin")
    return not origin or urllib.parse.urlparse(origin).netloc == request.host


# --- routes ----------------------------------------------------------------------------------------

def add_frontend_routes(app: web.Application, server) -> None:
    """Register the editor and its routes (both at /x and /api/x, as ComfyUI); call after all other routes:
    the static folder is mounted at / last so it never shadows an API route."""
    frontend = Frontend(server)
    routes = [
        ("GET", "/users", frontend.get_users), ("POST", "/users", frontend.post_users),
        ("GET", "/settings", frontend.get_settings), ("POST", "/settings", frontend.post_settings),
        ("GET", "/settings/{id}", frontend.get_setting), ("POST", "/settings/{id}", frontend.post_setting),
        ("GET", "/userdata", frontend.list_userdata), ("GET", "/v2/userdata", frontend.list_userdata_v2),
        ("GET", "/userdata/{file}", frontend.get_userdata), ("POST", "/userdata/{file}", frontend.post_userdata),
        ("DELETE", "/userdata/{file}", frontend.delete_userdata),
        ("POST", "/userdata/{file}/move/{dest}", frontend.move_userdata),
        ("GET", "/i18n", frontend.get_i18n),
        ("GET", "/experiment/models", frontend.get_model_folders),
        ("GET", "/experiment/models/{folder}", frontend.get_model_files),
        ("GET", "/workflow_templates", frontend.get_templates),
        ("GET", "/workflow_templates/" + PACK + "/{name}", frontend.get_template),
        ("GET", "/jobs", frontend.get_jobs), ("POST", "/jobs/cancel", frontend.cancel_jobs),
        ("GET", "/jobs/{job_id}", frontend.get_job), ("POST", "/jobs/{job_id}/cancel", frontend.cancel_job),
        ("GET", "/global_subgraphs", frontend.get_global_subgraphs),
        ("GET", "/global_subgraphs/{id}", frontend.get_global_subgraph),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
    app.router.add_route("GET", "/templates/index.json", frontend.get_core_templates)
    app.router.add_route("GET", "/internal/folder_paths", frontend.get_folder_paths)
    app.router.add_route("GET", "/internal/logs/raw", frontend.get_logs_raw)
    app.router.add_route("PATCH", "/internal/logs/subscribe", frontend.patch_logs_subscribe)
    app.router.add_route("GET", "/", frontend.get_index)
    app.router.add_route("GET", "/user.css", frontend.get_user_css)
    app.router.add_route("GET", "/favicon.ico", frontend.get_favicon)
    app.router.add_route("GET", "/{path:.+}", frontend.get_static)  # last: the editor's files, else a JSON 404


class Frontend:
    def __init__(self, server):
        self.server = server
        state = os.path.dirname(os.path.abspath(server.store.path))
        self.user_root = os.path.abspath(os.environ.get("VIBEBOARD_USER_DIR") or os.path.join(state, "user"))
        # workflows/ exists from the start: the editor lists it on every load and a 404 is a failed request
        for folder in ("workflows", "subgraphs"):
            os.makedirs(os.path.join(self.user_root, USER, folder), exist_ok=True)

    # --- page ---------------------------------------------------------------------------------
    async def get_index(self, request):
        static = frontend_static_dir(self.server.config.front_end_root)
        if static is None:
            return web.Response(status=503, content_type="text/html", text=(
                "<h1>VibeBoard</h1><p>The ComfyUI editor is not installed on this server: "
                "<code>pip install 'vibeboard[service]'</code> (it brings comfyui-frontend-package), then restart "
                "<code>vibeboard serve</code>. The API works without it.</p>"))
        with open(os.path.join(static, "index.html"), encoding="utf-8") as handle:
            page = with_credentialed_manifest(handle.read())
        return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def get_static(self, request):
        """The frontend package's files (scripts, styles, fonts); an unknown path is the server's JSON 404."""
        static = frontend_static_dir(self.server.config.front_end_root)
        rel = safe_relpath(request.match_info["path"], "path")
        path = resolve_inside(static, rel) if static and rel else None
        if path is None or not os.path.isfile(path):
            raise web.HTTPNotFound()  # the same JSON 404 as any unknown route (server.py's error middleware)
        return web.FileResponse(path)

    async def get_favicon(self, request):
        """Browsers ask for /favicon.ico; frontends before 1.5x ship none (a failed request on every load)."""
        static = frontend_static_dir(self.server.config.front_end_root)
        path = os.path.join(static, "favicon.ico") if static else ""
        if path and os.path.isfile(path):
            return web.FileResponse(path)
        return web.Response(status=204)

    async def get_user_css(self, request):
        """index.html links /user.css (ComfyUI's web root has none: a 404 on every load); the user's own CSS
        is the userdata file user.css, which the frontend loads itself."""
        return web.Response(body=b"", content_type="text/css")

    # --- users and settings -------------------------------------------------------------------
    async def get_users(self, request):
        return web.json_response({"storage": "server", "migrated": True})

    async def post_users(self, request):
        raise ApiError(400, "single_user", "this server runs in single-user mode (user 'default'), as ComfyUI "
                                           "does without --multi-user")

    def user_dir(self) -> str:
        return os.path.join(self.user_root, USER)

    def _settings_path(self) -> str:
        return os.path.join(self.user_dir(), "comfy.settings.json")

    def _read_settings(self) -> dict:
        try:
            with open(self._settings_path(), encoding="utf-8") as handle:
                stored = json.load(handle)
        except (OSError, ValueError):
            stored = {}
        return {**DEFAULT_SETTINGS, **(stored if isinstance(stored, dict) else {})}

    def _write_settings(self, settings: dict) -> None:
        _atomic_write(self._settings_path(), json.dumps(settings, indent=4).encode())

    async def get_settings(self, request):
        return web.json_response(self._read_settings())

    async def get_setting(self, request):
        return web.json_response(self._read_settings().get(request.match_info["id"]))

    async def post_settings(self, request):
        body = await self.server._json(request, "settings")
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "POST /settings expects a JSON object of setting → value")
        self._write_settings({**self._read_settings(), **body})
        return web.Response(status=200)

    async def post_setting(self, request):
        value = await self.server._json(request, "setting value")
        self._write_settings({**self._read_settings(), request.match_info["id"]: value})
        return web.Response(status=200)

    # --- userdata -----------------------------------------------------------------------------
    def _user_path(self, relpath: str, what: str = "file") -> str:
        rel = safe_relpath(relpath, what)
        if not rel:
            raise ApiError(400, "invalid_path", f"{what} is empty")
        return resolve_inside(self.user_dir(), rel)

    async def list_userdata(self, request):
        query = request.query
        directory = query.get("dir", "")
        if not directory:
            raise ApiError(400, "invalid_request", "dir is required")
        path = self._user_path(directory, "dir")
        if not os.path.isdir(path):
            raise ApiError(404, "not_found", f"folder {directory!r} not found")
        recurse = query.get("recurse") == "true"
        full_info, split = query.get("full_info") == "true", query.get("split") == "true"
        results = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                if full_info:
                    stat = os.stat(full)
                    results.append({"path": rel, "size": stat.st_size, "modified": stat.st_mtime,
                                    "created": stat.st_ctime})
                elif split:
                    results.append([rel] + rel.split("/"))
                else:
                    results.append(rel)
            if not recurse:
                break
        return web.json_response(results)

    async def list_userdata_v2(self, request):
        rel = safe_relpath(request.query.get("path", ""), "path")
        path = resolve_inside(self.user_dir(), rel)
        if not os.path.isdir(path):
            raise ApiError(404, "not_found", f"folder {rel!r} not found")
        items = []
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            item_path = f"{rel}/{name}" if rel else name
            if os.path.isdir(full):
                items.append({"name": name, "path": item_path, "type": "directory"})
            else:
                stat = os.stat(full)
                items.append({"name": name, "path": item_path, "type": "file", "size": stat.st_size,
                              "modified": stat.st_mtime})
        return web.json_response(items)

    async def get_userdata(self, request):
        path = self._user_path(request.match_info["file"])
        if not os.path.isfile(path):
            default = DEFAULT_USER_FILES.get(request.match_info["file"])
            if default:
                return web.Response(body=default[1], content_type=default[0])
            raise ApiError(404, "not_found", f"user file {request.match_info['file']!r} not found")
        return web.FileResponse(path)

    async def post_userdata(self, request):
        rel = request.match_info["file"]
        path = self._user_path(rel)
        if request.query.get("overwrite", "true") == "false" and os.path.exists(path):
            raise ApiError(409, "conflict", f"user file {rel!r} exists (overwrite=false)")
        body = await request.read()
        if len(body) > self.server.config.max_prompt_bytes:
            raise ApiError(413, "payload_too_large", f"user file is over {self.server.config.max_prompt_bytes} bytes")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _atomic_write(path, body)
        return web.json_response(self._info(path) if request.query.get("full_info") == "true"
                                 else safe_relpath(rel, "file"))

    async def delete_userdata(self, request):
        path = self._user_path(request.match_info["file"])
        if not os.path.isfile(path):
            raise ApiError(404, "not_found", f"user file {request.match_info['file']!r} not found")
        os.remove(path)
        return web.Response(status=204)

    async def move_userdata(self, request):
        source = self._user_path(request.match_info["file"])
        dest = self._user_path(request.match_info["dest"], "destination")
        if not os.path.isfile(source):
            raise ApiError(404, "not_found", f"user file {request.match_info['file']!r} not found")
        if request.query.get("overwrite", "true") == "false" and os.path.exists(dest):
            raise ApiError(409, "conflict", f"user file {request.match_info['dest']!r} exists (overwrite=false)")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.move(source, dest)
        return web.json_response(self._info(dest) if request.query.get("full_info") == "true"
                                 else os.path.relpath(dest, self.user_dir()).replace(os.sep, "/"))

    def _info(self, path: str) -> dict:
        stat = os.stat(path)
        return {"path": os.path.relpath(path, self.user_dir()).replace(os.sep, "/"), "size": stat.st_size,
                "modified": stat.st_mtime, "created": stat.st_ctime}

    # --- i18n, models, templates, subgraphs ---------------------------------------------------
    async def get_i18n(self, request):
        """Packs' locales/<lang>/main.json merged per language, as ComfyUI's custom_node_manager does."""
        result: dict = {}
        folder = os.path.join(ROOT, "locales")
        if os.path.isdir(folder):
            for lang in sorted(os.listdir(folder)):
                main = os.path.join(folder, lang, "main.json")
                if os.path.isfile(main):
                    with open(main, encoding="utf-8") as handle:
                        result[lang] = json.load(handle)
        return web.json_response(result)

    def _models_root(self):
        root = self.server.config.models_dir
        return os.path.abspath(root) if root and os.path.isdir(root) else None

    async def get_model_folders(self, request):
        root = self._models_root()
        if root is None:
            return web.json_response([])
        names = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))
        return web.json_response([{"name": n, "folders": [os.path.join(root, n)]} for n in names])

    async def get_model_files(self, request):
        root = self._models_root()
        folder = safe_relpath(request.match_info["folder"], "folder", allow_subdirs=False)
        path = resolve_inside(root, folder) if root else None
        if path is None or not os.path.isdir(path):
            raise ApiError(404, "not_found", f"model folder {folder!r} not found")
        files = []
        for base, _dirs, names in os.walk(path):
            for name in sorted(names):
                full = os.path.join(base, name)
                files.append({"name": os.path.relpath(full, path).replace(os.sep, "/"), "pathIndex": 0,
                              "modified": os.path.getmtime(full)})
        return web.json_response(files)

    async def get_templates(self, request):
        return web.json_response({PACK: template_names()})

    async def get_template(self, request):
        name = safe_relpath(request.match_info["name"], "template", allow_subdirs=False)
        path = resolve_inside(templates_dir(), name)
        if not name.endswith((".json", ".webp", ".png", ".jpg")) or name.endswith(".api.json") \
                or not os.path.isfile(path):
            raise ApiError(404, "not_found", f"template {name!r} not found")
        return web.FileResponse(path)

    async def get_core_templates(self, request):
        """ComfyUI's own templates come from the comfyui-workflow-templates package, which needs models we do
        not run; an empty index is what the frontend shows when that package is missing."""
        return web.json_response([])

    async def get_global_subgraphs(self, request):
        return web.json_response({})

    async def get_global_subgraph(self, request):
        raise ApiError(404, "not_found", f"no global subgraph {request.match_info['id']!r} on this server")

    async def get_folder_paths(self, request):
        folders = {"input": [self.server.dirs["input"]], "output": [self.server.dirs["output"]],
                   "temp": [self.server.dirs["temp"]]}
        root = self._models_root()
        if root:
            for name in sorted(os.listdir(root)):
                if os.path.isdir(os.path.join(root, name)):
                    folders[name] = [os.path.join(root, name)]
        return web.json_response(folders)

    async def get_logs_raw(self, request):
        return web.json_response({"entries": [], "size": {"cols": 120, "rows": 40}})

    async def patch_logs_subscribe(self, request):
        return web.Response(status=200)

    # --- jobs (the newer queue/history panel) -------------------------------------------------
    async def get_jobs(self, request):
        query = request.query
        wanted = {s for s in query.get("status", "").split(",") if s}
        try:
            limit = min(max(int(query.get("limit", 200)), 0), 1000)
            offset = max(int(query.get("offset", 0)), 0)
        except ValueError:
            raise ApiError(400, "invalid_request", "limit and offset must be integers")
        jobs = await self.server._off(self._job_list, wanted)
        page = jobs[offset:offset + limit]
        return await self.server._json_response({"jobs": page, "pagination": {
            "offset": offset, "limit": limit, "total": len(jobs), "has_more": offset + len(page) < len(jobs)}})

    def _job_list(self, wanted: set) -> list:
        store = self.server.store
        states = [s for s, mapped in JOB_STATUS.items() if not wanted or mapped in wanted]
        rows = store.by_status(*states) if states else []
        items = [job_item(r) for r in rows]
        queue_rank = {"in_progress": 0, "pending": 1}
        queue = sorted((j for j in items if j["status"] in queue_rank),
                       key=lambda j: (queue_rank[j["status"]], j["priority"]))
        done = sorted((j for j in items if j["status"] not in queue_rank),
                      key=lambda j: -(j["execution_end_time"] or j["create_time"]))
        return queue + done  # running, pending in queue order, then history newest first

    async def get_job(self, request):
        job = await self.server._off(self.server.store.get, request.match_info["job_id"])
        if job is None:
            raise ApiError(404, "not_found", f"job {request.match_info['job_id']!r} not found")
        item = job_item(job)
        item.update({"workflow": {"prompt": job["prompt"], "extra_data": _public_extra(job["extra_data"])},
                     "outputs": (job["history"] or {}).get("outputs") or job["partial_outputs"] or {},
                     "execution_status": (job["history"] or {}).get("status")})
        return await self.server._json_response(item)

    async def cancel_job(self, request):
        await self.server._off(self._cancel, [request.match_info["job_id"]])
        return web.Response(status=200)

    async def cancel_jobs(self, request):
        body = await self.server._json(request)
        ids = body.get("job_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ApiError(400, "invalid_request", "expected {\"job_ids\": [ids]}")
        await self.server._off(self._cancel, ids)
        return web.Response(status=200)

    def _cancel(self, ids: list) -> None:
        """Idempotent, as the frontend expects: a queued job is removed, the running one interrupted, a finished
        or unknown one left alone."""
        service = self.server.service
        service.delete_queued(ids)
        running = service.running
        if running is not None and running.get("id") in ids:
            service.interrupt(running["id"])


def job_item(job) -> dict:
    history = job["history"] or {}
    outputs = history.get("outputs") or job["partial_outputs"] or {}
    preview, count, previewable = None, 0, 0
    for node_id, ui in outputs.items():
        for key, items in (ui or {}).items():
            if not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                count += 1
                if key in MEDIA_KEYS:
                    previewable += 1
                    if preview is None:
                        preview = {"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                   "type": item.get("type", "output"), "nodeId": str(node_id), "mediaType": key}
    error = None
    for name, data in (history.get("status") or {}).get("messages") or []:
        if name == "execution_error" and isinstance(data, dict):
            error = data
    return {"id": job["id"], "status": JOB_STATUS.get(job["status"], "failed"), "priority": job["number"],
            "create_time": int(job["created_at"] * 1000),
            "execution_start_time": int(job["started_at"] * 1000) if job["started_at"] else None,
            "execution_end_time": int(job["finished_at"] * 1000) if job["finished_at"] else None,
            "preview_output": preview, "outputs_count": count, "previewable_outputs_count": previewable,
            "execution_error": error,
            "workflow_id": _workflow_id(job["extra_data"])}


def _workflow_id(extra) -> object:
    workflow = ((extra or {}).get("extra_pnginfo") or {}).get("workflow") if isinstance(extra, dict) else None
    value = workflow.get("id") if isinstance(workflow, dict) else None
    return value if isinstance(value, str) else None


def _public_extra(extra: dict) -> dict:
    from .server import SECRET_EXTRA_KEYS
    return {k: v for k, v in (extra or {}).items() if k not in SECRET_EXTRA_KEYS}


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
