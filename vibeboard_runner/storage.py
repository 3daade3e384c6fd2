"""Where finished outputs go: a local folder (default) or an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO).

Every file a job produced is pushed under a key `<prefix>/<job_id>/<node_id>/<subfolder/filename>`; job ids are
unique, so keys never collide between jobs. `put_file` returns a StoredObject with a URL the client can fetch
(a presigned GET URL, or `<public base URL>/<key>` when the bucket is served publicly).
"""
from __future__ import annotations

import json
import mimetypes
import os
import re
import shutil
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Optional

# Explicit table first: mimetypes differs between systems and misses several formats we write.
CONTENT_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
    ".mkv": "video/x-matroska", ".gif": "image/gif", ".png": "image/png", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".webp": "image/webp", ".exr": "image/x-exr", ".tif": "image/tiff",
    ".tiff": "image/tiff", ".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg", ".opus": "audio/opus", ".m4a": "audio/mp4", ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json", ".obj": "model/obj", ".ply": "application/ply", ".usdz": "model/vnd.usdz+zip",
    ".json": "application/json", ".txt": "text/plain; charset=utf-8", ".srt": "application/x-subrip",
    ".vtt": "text/vtt", ".safetensors": "application/octet-stream", ".npz": "application/octet-stream",
    ".zip": "application/zip",
}


def content_type_for(filename: str) -> str:
    ext = os.path.splitext(filename)[1].lower()
    if ext in CONTENT_TYPES:
        return CONTENT_TYPES[ext]
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"


_SAFE_PART = re.compile(r"[^A-Za-z0-9._=+@-]")


def _clean_part(part: str) -> str:
    """One key segment: no slashes, no '..', nothing a shell or URL would trip on."""
    cleaned = _SAFE_PART.sub("_", str(part)).strip(".")
    return cleaned or "_"


def object_key(prefix: str, job_id: str, node_id: str, filename: str, subfolder: str = "") -> str:
    parts = [p for p in (prefix or "").split("/") if p]
    parts = [_clean_part(p) for p in parts]
    parts += [_clean_part(job_id), _clean_part(node_id)]
    parts += [_clean_part(p) for p in (subfolder or "").replace("\\", "/").split("/") if p]
    parts.append(_clean_part(os.path.basename(filename)))
    return "/".join(parts)


@dataclass
class StoredObject:
    key: str
    url: str
    size: int
    content_type: str
    storage: str
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


class StorageError(RuntimeError):
    pass


class Storage:
    """Interface. `put_file(path, key)` → StoredObject; `url_for(key)` → fetchable URL."""

    name = "storage"

    def __init__(self, prefix: str = ""):
        self.prefix = prefix.strip("/")

    def key_for(self, job_id: str, node_id: str, filename: str, subfolder: str = "",
                prefix: Optional[str] = None) -> str:
        return object_key(self.prefix if prefix is None else prefix, job_id, node_id, filename, subfolder)

    def put_file(self, path: str, key: str, content_type: Optional[str] = None) -> StoredObject:
        raise NotImplementedError

    def url_for(self, key: str) -> str:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"storage": self.name, "prefix": self.prefix}


class LocalStorage(Storage):
    """Publishes into a folder: hard link when on the same disk (no copy of big videos), else a copy."""

    name = "local"

    def __init__(self, root: str, prefix: str = "", public_base_url: Optional[str] = None):
        super().__init__(prefix)
        self.root = os.path.abspath(root)
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    def _path(self, key: str) -> str:
        from vibeboard.common.paths import PathEscapeError, resolve_inside
        try:  # resolved: a link inside the store folder must not lead a copy out of it
            return resolve_inside(self.root, key, what="storage key")
        except PathEscapeError as exc:
            raise StorageError(str(exc)) from None

    def put_file(self, path: str, key: str, content_type: Optional[str] = None) -> StoredObject:
        target = self._path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.exists(target):
            os.remove(target)
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        return StoredObject(key=key, url=self.url_for(key), size=os.path.getsize(target),
                            content_type=content_type or content_type_for(path), storage=self.name,
                            extra={"path": target})

    def url_for(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{urllib.parse.quote(key)}"
        return "file://" + urllib.parse.quote(self._path(key))

    def describe(self) -> dict:
        return {"storage": self.name, "prefix": self.prefix, "root": self.root}


class S3Storage(Storage):
    """boto3 client for S3 and S3-compatible stores. R2: endpoint `https://<account>.r2.cloudflarestorage.com`,
    region "auto"; boto3 ≥ 1.36 default checksums are switched to "when_required" (R2 rejects the trailers)."""

    name = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: Optional[str] = None,
                 region_name: Optional[str] = None, access_key_id: Optional[str] = None,
                 secret_access_key: Optional[str] = None, session_token: Optional[str] = None,
                 public_base_url: Optional[str] = None, url_expiry: int = 604800,
                 multipart_threshold: int = 8 * 1024 * 1024, multipart_chunksize: int = 8 * 1024 * 1024,
                 max_attempts: int = 5, addressing_style: str = "auto", upload_attempts: int = 3,
                 connect_timeout_s: float = 10.0, read_timeout_s: float = 60.0):
        super().__init__(prefix)
        if not bucket:
            raise StorageError("S3 storage needs a bucket (VIBEBOARD_S3_BUCKET)")
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url or None
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        # Presigned URLs: S3 SigV4 and R2 both cap the expiry at 7 days.
        self.url_expiry = max(1, min(int(url_expiry), 604800))
        self.upload_attempts = max(1, int(upload_attempts))
        if region_name is None:
            region_name = "auto" if self.endpoint_url else os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        config = Config(
            signature_version="s3v4",
            retries={"max_attempts": int(max_attempts), "mode": "standard"},
            s3={"addressing_style": addressing_style},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Bounded: a hanging endpoint fails a request after these (× attempts) instead of holding an
            # upload worker forever.
            connect_timeout=float(connect_timeout_s), read_timeout=float(read_timeout_s),
        )
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=region_name,
            aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
            aws_session_token=session_token or None, config=config)
        # Parts must be ≥ 5 MiB (S3/R2) and, for R2, all the same size — a fixed chunk size does that.
        self.transfer_config = TransferConfig(multipart_threshold=int(multipart_threshold),
                                              multipart_chunksize=max(int(multipart_chunksize), 5 * 1024 * 1024),
                                              use_threads=True, max_concurrency=4)

    def put_file(self, path: str, key: str, content_type: Optional[str] = None) -> StoredObject:
        content_type = content_type or content_type_for(path)
        size = os.path.getsize(path)
        delay = 0.5
        for attempt in range(1, self.upload_attempts + 1):
            try:
                self.client.upload_file(path, self.bucket, key, Config=self.transfer_config,
                                        ExtraArgs={"ContentType": content_type})
                break
            except Exception as exc:  # botocore already retried transient errors; this covers dropped uploads
                if attempt == self.upload_attempts:
                    raise StorageError(f"upload of {os.path.basename(path)} to s3://{self.bucket}/{key} failed "
                                       f"after {attempt} attempts: {exc}") from exc
                time.sleep(delay)
                delay *= 2
        return StoredObject(key=key, url=self.url_for(key), size=size, content_type=content_type,
                            storage=self.name, extra={"bucket": self.bucket})

    def abort_incomplete(self, key: str) -> int:
        """Abort every multipart upload still open for exactly `key` (a failed or killed upload leaves its
        parts billed until the bucket's lifecycle rule runs). Returns how many were aborted."""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
            for upload in page.get("Uploads") or []:
                if upload.get("Key") == key:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def url_for(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{urllib.parse.quote(key)}"
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=self.url_expiry)

    def describe(self) -> dict:
        return {"storage": self.name, "bucket": self.bucket, "prefix": self.prefix,
                "endpoint_url": self.endpoint_url, "public_base_url": self.public_base_url}


# --- configuration -------------------------------------------------------------------------------

def _first(env: Mapping[str, str], *names: str) -> Optional[str]:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def load_config_file(path: Optional[str]) -> dict:
    """JSON config file (`--config` / VIBEBOARD_CONFIG): {"storage": {...}, "webhook": {...}, ...}."""
    if not path:
        return {}
    with open(path, "r", encoding="utf-8") as handle:
        return json.load(handle)


def storage_from_config(env: Optional[Mapping[str, str]] = None, config: Optional[dict] = None,
                        default_local_root: Optional[str] = None) -> Storage:
    """Environment variables win over the config file's "storage" section (documented in docs/service.md)."""
    env = os.environ if env is None else env
    conf = dict((config or {}).get("storage", {}))

    def get(env_names, conf_name, default=None):
        value = _first(env, *env_names)
        if value is None:
            value = conf.get(conf_name, default)
        return value

    bucket = get(("VIBEBOARD_S3_BUCKET",), "bucket")
    kind = (get(("VIBEBOARD_STORAGE",), "kind") or ("s3" if bucket else "local")).lower()
    prefix = get(("VIBEBOARD_S3_PREFIX", "VIBEBOARD_STORAGE_PREFIX"), "prefix", "") or ""
    public = get(("VIBEBOARD_S3_PUBLIC_URL", "VIBEBOARD_PUBLIC_URL"), "public_url")
    if kind == "local":
        root = get(("VIBEBOARD_STORE_DIR",), "root", default_local_root)
        if not root:
            raise StorageError("local storage needs a folder (VIBEBOARD_STORE_DIR)")
        return LocalStorage(root, prefix=prefix, public_base_url=public)
    if kind not in ("s3", "r2"):
        raise StorageError(f"unknown storage kind {kind!r} (VIBEBOARD_STORAGE must be 'local', 's3' or 'r2')")
    endpoint = get(("VIBEBOARD_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"), "endpoint_url")
    account = get(("R2_ACCOUNT_ID", "CLOUDFLARE_ACCOUNT_ID"), "r2_account_id")
    if not endpoint and kind == "r2" and account:
        endpoint = f"https://{account}.r2.cloudflarestorage.com"
    mib = 1024 * 1024
    return S3Storage(
        bucket=bucket, prefix=prefix, endpoint_url=endpoint,
        region_name=get(("VIBEBOARD_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"), "region_name",
                        "auto" if (endpoint or kind == "r2") else None),
        access_key_id=get(("VIBEBOARD_S3_ACCESS_KEY_ID", "R2_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"), "access_key_id"),
        secret_access_key=get(("VIBEBOARD_S3_SECRET_ACCESS_KEY", "R2_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
                              "secret_access_key"),
        session_token=get(("AWS_SESSION_TOKEN",), "session_token"),
        public_base_url=public,
        url_expiry=int(get(("VIBEBOARD_S3_URL_EXPIRY",), "url_expiry", 604800)),
        multipart_threshold=int(float(get(("VIBEBOARD_S3_MULTIPART_THRESHOLD_MB",), "multipart_threshold_mb", 8)) * mib),
        multipart_chunksize=int(float(get(("VIBEBOARD_S3_MULTIPART_CHUNK_MB",), "multipart_chunk_mb", 8)) * mib),
        max_attempts=int(get(("VIBEBOARD_S3_MAX_ATTEMPTS",), "max_attempts", 5)),
        addressing_style=get(("VIBEBOARD_S3_ADDRESSING",), "addressing_style", "path" if endpoint else "auto"),
        read_timeout_s=float(get(("VIBEBOARD_S3_TIMEOUT_S",), "timeout_s", 60)),
    )


def push_outputs(storage: Storage, job_id: str, files: list, prefix: Optional[str] = None) -> list:
    """Push every output file of a job. `files` rows: {"node", "filename", "subfolder", "type", "path"}.
    Returns rows extended with key/url/size/content_type (or "upload_error" for a file that failed).
    Unjournalled: a process with a state folder pushes with upload_journal.push_outputs_journalled instead, so a
    kill mid-upload leaves no multipart upload open."""
    return [push_one(storage, job_id, row, prefix) for row in files]


def push_one(storage: Storage, job_id: str, row: dict, prefix: Optional[str] = None,
             before: Optional[Callable[[str], None]] = None) -> dict:
    """Push one output row; never raises (a failure is the row's "upload_error"). `before(key)` runs just
    before the upload starts (the server journals the key there)."""
    entry = {k: row.get(k) for k in ("node", "filename", "subfolder", "type")}
    path = row.get("path")
    if not path or not os.path.isfile(path):
        entry["upload_error"] = "file missing on disk"
        return entry
    key = storage.key_for(job_id, str(row.get("node", "_")), row["filename"], row.get("subfolder") or "",
                          prefix=prefix)
    try:
        if before is not None:
            before(key)
        entry.update(storage.put_file(path, key).to_dict())
    except Exception as exc:
        entry.update(key=key, upload_error=str(exc))
    return entry


def storage_from_args(args, config_file: dict) -> Optional[Storage]:
    """The output storage of `serve` / `worker`: --storage/--store-dir over the environment over the config
    file; None for --storage none. Local storage defaults to the state folder's store (vibeboard_runner/state.py)."""
    env = dict(os.environ)
    if getattr(args, "storage", None):
        env["VIBEBOARD_STORAGE"] = args.storage
    if getattr(args, "store_dir", None):
        env["VIBEBOARD_STORE_DIR"] = args.store_dir
    if env.get("VIBEBOARD_STORAGE", (config_file.get("storage") or {}).get("kind")) == "none":
        return None
    from .state import default_store_dir
    default_root = default_store_dir(args.output_dir)
    return storage_from_config(env, config_file, default_local_root=default_root)
