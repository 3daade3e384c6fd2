"""ComfyUI's file routes: GET /view (a file from output/input/temp, confined to that folder) and
POST /upload/image (multipart, size-limited, ComfyUI's same-content reuse and 'name (1).ext' renaming)."""
from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import urllib.parse

from aiohttp import web

from .security import ApiError, resolve_inside, safe_relpath
from .storage import content_type_for

FOLDER_TYPES = ("output", "input", "temp")
MAX_FORM_FIELD_BYTES = 4096


def file_routes(server) -> list:
    """(method, path, handler) rows for VibeServer's route table (served at /x and /api/x)."""
    files = Files(server)
    return [("GET", "/view", files.get_view), ("POST", "/upload/image", files.post_upload_image)]


class Files:
    def __init__(self, server):
        self.server = server

    async def get_view(self, request):
        query = request.query
        filename = query.get("filename")
        if not filename:
            raise ApiError(400, "invalid_request", "filename is required")
        kind = query.get("type", "output") or "output"
        for folder in FOLDER_TYPES:  # ComfyUI's "name.png [output]" annotation
            if filename.endswith(f" [{folder}]"):
                filename, kind = filename[: -len(folder) - 3], folder
        if kind not in FOLDER_TYPES:
            raise ApiError(400, "invalid_request", f"type must be one of {', '.join(FOLDER_TYPES)}")
        name = safe_relpath(filename, "filename", allow_subdirs=False)
        subfolder = safe_relpath(query.get("subfolder", ""), "subfolder")
        path = resolve_inside(self.server.dirs[kind], subfolder, name)
        if not os.path.isfile(path):
            raise ApiError(404, "not_found", f"file {filename!r} not found in {kind}"
                           + (f"/{subfolder}" if subfolder else ""))
        ctype = content_type_for(name)
        if ctype.startswith(("text/html", "text/javascript", "application/javascript", "text/css")):
            ctype = "application/octet-stream"  # never let a browser run uploaded files as pages/scripts
        headers = {"Content-Disposition": f'filename="{urllib.parse.quote(os.path.basename(name))}"',
                   "Content-Type": ctype}
        return web.FileResponse(path, headers=headers)

    async def post_upload_image(self, request):
        if not request.content_type.startswith("multipart/"):
            raise ApiError(415, "unsupported_media_type",
                           f"upload must be multipart/form-data, got {request.content_type or 'no content type'}")
        dirs = self.server.dirs
        limit = self.server.config.max_upload_bytes
        if request.content_length is not None and request.content_length > limit + 65536:
            raise ApiError(413, "payload_too_large", f"upload is {request.content_length} bytes; limit is {limit}")
        reader = await request.multipart()
        fields, tmp_path, original_name = {}, None, None
        try:
            async for part in reader:
                if part.name == "image" and part.filename is not None and tmp_path is None:  # first file wins
                    original_name = part.filename
                    fd, tmp_path = tempfile.mkstemp(dir=dirs["temp"], prefix=".upload-")
                    size = 0
                    with os.fdopen(fd, "wb") as handle:
                        while True:
                            chunk = await part.read_chunk(1 << 20)
                            if not chunk:
                                break
                            size += len(chunk)
                            if size > limit:
                                raise ApiError(413, "payload_too_large", f"upload exceeds the limit of {limit} bytes")
                            handle.write(chunk)
                elif part.name in ("type", "subfolder", "overwrite"):
                    fields[part.name] = await _read_small_field(part, MAX_FORM_FIELD_BYTES)
            if tmp_path is None:
                raise ApiError(400, "invalid_request", "multipart field 'image' (a file) is required")
            kind = fields.get("type") or "input"
            if kind not in FOLDER_TYPES:
                raise ApiError(400, "invalid_request", f"type must be one of {', '.join(FOLDER_TYPES)}")
            name = safe_relpath(original_name, "filename", allow_subdirs=False)
            if not name:
                raise ApiError(400, "invalid_request", "uploaded file has no name")
            subfolder = safe_relpath(fields.get("subfolder", ""), "subfolder")
            folder = resolve_inside(dirs[kind], subfolder)
            os.makedirs(folder, exist_ok=True)
            overwrite = fields.get("overwrite", "").lower() in ("true", "1")
            final = await asyncio.get_running_loop().run_in_executor(  # hashing big files: off the loop
                None, _place_upload, tmp_path, folder, name, overwrite)
            tmp_path = None
            return web.json_response({"name": os.path.basename(final), "subfolder": subfolder, "type": kind})
        finally:
            if tmp_path and os.path.exists(tmp_path):
                os.remove(tmp_path)


async def _read_small_field(part, limit: int) -> str:
    """A text form field, read in chunks and refused past `limit` (part.read() would buffer any size)."""
    data = bytearray()
    while True:
        chunk = await part.read_chunk(limit + 1)
        if not chunk:
            break
        data.extend(chunk)
        if len(data) > limit:
            raise ApiError(413, "payload_too_large", f"form field '{part.name}' is longer than {limit} bytes")
    return bytes(part.decode(bytes(data))).decode("utf-8", "replace")


def _place_upload(tmp_path: str, folder: str, name: str, overwrite: bool) -> str:
    """ComfyUI behaviour: same content → reuse the existing file; name clash → 'name (1).ext'."""
    target = os.path.join(folder, name)
    if not overwrite and os.path.exists(target):
        if _sha256(target) == _sha256(tmp_path):
            os.remove(tmp_path)
            return target
        stem, ext = os.path.splitext(name)
        index = 1
        while os.path.exists(os.path.join(folder, f"{stem} ({index}){ext}")):
            index += 1
        target = os.path.join(folder, f"{stem} ({index}){ext}")
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; ComfyUI's uploads are world-readable like any saved file
    shutil.move(tmp_path, target)
    return target


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
