"""The Dailies review page and its JSON API, mounted on `vibeboard serve` (aiohttp):

  GET  /vibeboard/dailies/review                       the page (static HTML, no data; reads ?project=&shot=)
  GET  /vibeboard/dailies/api/{project}/shots          shots and their version stacks
  GET  /vibeboard/dailies/api/{project}/versions/{id}  one version: notes, annotations, the version before it
  GET  /vibeboard/dailies/api/{project}/media/{id}     its media (only files inside the server's folders)
  POST /vibeboard/dailies/api/{project}/notes          {version_id, text, start_frame, end_frame, shapes: [...]}
  POST /vibeboard/dailies/api/{project}/status         {version_id, status}
  POST /vibeboard/dailies/api/{project}/notes/{id}/rerender
  GET  /vibeboard/dailies/api/{project}/export/{shot}?format=otio|csv|edl&fps=24

The data routes sit behind the server's token like every other route (the page sends `Authorization: Bearer`
with the token given in its URL fragment, `#token=…`, which never reaches the server's logs). `export_static`
writes a read-only copy of the page with its data and media for people without access to the server.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Iterable, Optional

from aiohttp import web

from ..common.runtime import NodeInputError
from ..media import files
from ..sequencer import node_io
from .store import DailiesError, DailiesStore

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "review_page.html")
PAGE_ROUTE = "/vibeboard/dailies/review"
API = "/vibeboard/dailies/api/{project}"


def _error(status: int, kind: str, message: str):
    body = {"error": {"type": kind, "message": message, "details": "", "extra_info": {}}, "node_errors": {}}
    return web.json_response(body, status=status)


class ReviewApi:
    def __init__(self, output_dir: str, media_roots: Iterable[str]):
        self.folder = os.path.join(os.path.abspath(output_dir), "vibeboard", "dailies")
        self.media_roots = [os.path.realpath(r) for r in media_roots]
        self._stores: Dict[str, DailiesStore] = {}

    def store(self, request) -> DailiesStore:
        try:
            name = node_io.project_name("Dailies review", request.match_info["project"])
        except NodeInputError as exc:
            raise DailiesError(str(exc).split(": ", 2)[-1]) from None
        path = files.safe_join(self.folder, f"{name}.sqlite")
        if not os.path.isfile(path):
            raise LookupError(f"no Dailies project '{name}'")
        if name not in self._stores:
            self._stores[name] = DailiesStore(path)
        return self._stores[name]

    @web.middleware
    async def errors(self, request, handler):
        try:
            return await handler(request)
        except DailiesError as exc:
            return _error(400, "invalid_request", str(exc))
        except LookupError as exc:
            return _error(404, "not_found", str(exc.args[0] if exc.args else exc))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "invalid_request", "the request body is not JSON")

    def routes(self):
        return [("GET", PAGE_ROUTE, self.page), ("GET", API + "/shots", self.shots),
                ("GET", API + "/versions/{version_id}", self.version), ("GET", API + "/media/{version_id}", self.media),
                ("POST", API + "/notes", self.add_note), ("POST", API + "/status", self.set_status),
                ("POST", API + "/notes/{note_id}/rerender", self.rerender),
                ("GET", API + "/export/{shot}", self.export)]

    async def page(self, request):
        return web.FileResponse(PAGE, headers={"Content-Type": "text/html; charset=utf-8",
                                               "Cache-Control": "no-store"})

    async def shots(self, request):
        store = self.store(request)
        return web.json_response({"shots": [{"shot": s, "versions": store.stack(s)} for s in store.shots()]})

    async def version(self, request):
        return web.json_response(version_detail(self.store(request), request.match_info["version_id"]))

    async def media(self, request):
        version = self.store(request).version(request.match_info["version_id"])
        real = os.path.realpath(version["path"])
        if not any(os.path.commonpath([real, root]) == root for root in self.media_roots):
            return _error(403, "forbidden", f"{version['id']}: its media is outside the server's folders")
        if not os.path.isfile(real):
            return _error(404, "not_found", f"{version['id']}: media file is missing")
        return web.FileResponse(real, headers={"Content-Type": "video/mp4"})

    async def add_note(self, request):
        body = await request.json()
        store = self.store(request)
        shapes = body.get("shapes") or []
        if not isinstance(shapes, list):
            raise DailiesError("'shapes' must be a list")
        from .store import check_shape
        for shape in shapes:  # all shapes valid before anything is written
            check_shape(shape)
        vid = str(body.get("version_id", ""))
        start, end = int(body.get("start_frame", 0)), int(body.get("end_frame", body.get("start_frame", 0)))
        note = store.add_note(vid, str(body.get("text", "")), start, end, author=str(body.get("author", "reviewer")))
        annotations = [store.add_annotation(vid, shape, start, end, note["id"]) for shape in shapes]
        return web.json_response({"note": note, "annotations": annotations})

    async def set_status(self, request):
        body = await request.json()
        return web.json_response(self.store(request).set_status(str(body.get("version_id", "")),
                                                                 str(body.get("status", ""))))

    async def rerender(self, request):
        from . import rerender
        try:
            note_id = int(request.match_info["note_id"])
        except ValueError:
            raise DailiesError("note id must be a number") from None
        return web.json_response(rerender.propose(self.store(request), note_id))

    async def export(self, request):
        from . import review_export
        store = self.store(request)
        shot, fmt = request.match_info["shot"], request.query.get("format", "otio")
        fps = float(request.query.get("fps", 24))
        if not store.stack(shot):
            raise LookupError(f"no versions of shot '{shot}'")
        text = review_export.export_text(store, shot, fmt, fps)
        return web.Response(text=text, content_type="text/plain",
                            headers={"Content-Disposition": f'attachment; filename="{shot}_notes.{fmt}"'})


def version_detail(store: DailiesStore, version_id: str) -> dict:
    version = store.version(version_id)
    stack = store.stack(version["shot"])
    older = [v for v in stack if v["number"] < version["number"]]
    previous = version["parent_id"] or (older[0]["id"] if older else None)
    return {"version": version, "notes": store.notes(version_id=version_id),
            "annotations": store.annotations(version_id=version_id), "previous": previous}


def add_review_routes(app: web.Application, output_dir: str, media_roots: Optional[Iterable[str]] = None) -> ReviewApi:
    """Mount the page and its API on an aiohttp app (also under /api, like the ComfyUI routes)."""
    api = ReviewApi(output_dir, media_roots or [output_dir])
    for method, path, handler in api.routes():
        wrapped = _with_errors(api, handler)
        app.router.add_route(method, path, wrapped)
        app.router.add_route(method, "/api" + path, wrapped)
    return api


def mount_in_comfyui() -> bool:
    """Inside real ComfyUI: add the page and its API to ComfyUI's own server (PromptServer's route table), with
    the output folder as the project folder. Does nothing (False) anywhere else."""
    import sys
    server = sys.modules.get("server")
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    routes = getattr(prompt_server, "routes", None)
    if routes is None or getattr(prompt_server, "_vibeboard_dailies", False):
        return False
    try:
        import folder_paths
        output_dir = folder_paths.get_output_directory()
        roots = [output_dir, folder_paths.get_input_directory(), folder_paths.get_temp_directory()]
    except Exception:
        return False
    api = ReviewApi(output_dir, roots)
    for method, path, handler in api.routes():
        routes.route(method, path)(_with_errors(api, handler))
    prompt_server._vibeboard_dailies = True
    return True


def _with_errors(api: ReviewApi, handler):
    async def run(request):
        return await api.errors(request, handler)
    return run


def export_static(store: DailiesStore, folder: str, shots: Optional[Iterable[str]] = None) -> str:
    """A read-only review folder: index.html + data.js (versions, notes, annotations) + media/. Opens from disk."""
    os.makedirs(os.path.join(folder, "media"), exist_ok=True)
    data = {"shots": [], "versions": {}}
    for shot in shots or store.shots():
        stack = store.stack(shot)
        for version in stack:
            name = f"{version['id']}{os.path.splitext(version['path'])[1] or '.mp4'}"
            if version.get("media_allowed") and os.path.isfile(version["path"]):  # never copy a file from outside
                shutil.copyfile(version["path"], os.path.join(folder, "media", name))
            detail = version_detail(store, version["id"])
            detail["media"] = f"media/{name}"
            data["versions"][version["id"]] = detail
        data["shots"].append({"shot": shot, "versions": stack})
    with open(os.path.join(folder, "data.js"), "w", encoding="utf-8") as handle:
        handle.write("window.DAILIES_STATIC = " + json.dumps(data, default=str) + ";\n")
    with open(PAGE, encoding="utf-8") as handle:
        page = handle.read()
    page = page.replace("<!--STATIC_DATA-->", '<script src="data.js"></script>')
    with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as handle:
        handle.write(page)
    return os.path.join(folder, "index.html")
