"""`vibeboard models pull`: fetch registry models with huggingface_hub, atomically.

Files are fetched into a hidden staging folder next to their destination (`.vb-download/`), checked against
the published SHA-256 (LFS files publish one), and renamed into place only when complete. A failure removes
the staging data, so a loader never sees a half file; `keep_partial=True` keeps it for the next try to resume
(huggingface_hub resumes `.incomplete` files it finds there).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Callable, Optional

from ..common import runtime
from . import registry


class PullError(RuntimeError):
    pass


def sha256_file(path: str, chunk: int = 16 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _checksum_db() -> str:
    return os.path.join(runtime.models_directory(), ".vibeboard", "checksums.json")


def record_checksum(path: str, digest: str) -> None:
    db = _checksum_db()
    os.makedirs(os.path.dirname(db), exist_ok=True)
    data = {}
    if os.path.isfile(db):
        with open(db) as f:
            data = json.load(f)
    data[os.path.abspath(path)] = {"sha256": digest, "size": os.path.getsize(path)}
    tmp = db + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, db)


def recorded_checksum(path: str) -> Optional[dict]:
    db = _checksum_db()
    if not os.path.isfile(db):
        return None
    with open(db) as f:
        return json.load(f).get(os.path.abspath(path))


def published_sha256(repo: str, paths: list, endpoint=None, token=None, revision=None) -> dict:
    """{repo path: sha256} for LFS files (None where the hub publishes none)."""
    from huggingface_hub import HfApi
    info = HfApi(endpoint=endpoint, token=token).get_paths_info(repo, paths, expand=True, revision=revision)
    out = {}
    for item in info:
        lfs = getattr(item, "lfs", None)
        out[item.path] = getattr(lfs, "sha256", None) if lfs is not None else None
    return out


OFFLINE_HINT = ("no connection to the Hugging Face hub (offline, firewall, or HF_HUB_OFFLINE=1); "
                "copy the file to {dest} by hand or retry when online")


def _offline(exc: Exception) -> bool:
    chain, seen = [], exc
    while seen is not None and len(chain) < 6:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    names = " ".join(type(e).__name__ for e in chain)
    text = " ".join(str(e) for e in chain).lower()
    return any(k in names for k in ("LocalEntryNotFound", "OfflineMode", "Connect", "Timeout")) or \
        any(k in text for k in ("connection", "offline", "name resolution", "timed out"))


def hub_reachable(endpoint=None, timeout: float = 5.0) -> bool:
    """A quick TCP connect to the hub, so offline fails in seconds instead of after retries."""
    import socket
    from urllib.parse import urlparse
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _explain(exc: Exception, repo: str, dest: str) -> str:
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else name
    if "RemoteProtocol" in name or "IncompleteRead" in name or "peer closed" in text:
        hint = ("the connection dropped mid-download; nothing was kept — run pull again "
                "(--keep-partial keeps the partial data to resume)")
    elif _offline(exc):
        hint = OFFLINE_HINT.format(dest=dest)
    elif "Gated" in name or "401" in text or "403" in text:
        hint = "this repo is gated: accept its licence on huggingface.co and set HF_TOKEN"
    elif "NotFound" in name or "404" in text:
        hint = "the repo or file was not found (renamed upstream?)"
    else:
        hint = "unexpected error"
    return f"could not download from huggingface.co/{repo}: {hint} [{name}: {text}]"


def pull(name: str, source: Optional[str] = None, root: Optional[str] = None, endpoint: Optional[str] = None,
         token: Optional[str] = None, verify: bool = True, keep_partial: bool = False,
         log: Callable[[str], None] = print) -> list:
    """Download one registry model (one source) under `root` (our models dir by default). Returns paths."""
    from huggingface_hub import hf_hub_download, snapshot_download
    source, src = registry.source_of(name, source)
    root = root or runtime.models_directory()
    endpoint = endpoint or os.environ.get("VIBEBOARD_HF_ENDPOINT") or None
    token = token or os.environ.get("HF_TOKEN") or None
    repo = src["repo"]
    if src.get("format") == "ckpt":
        log(f"note: {name} ships pickled .ckpt files; VibeBoard will not load them until converted to "
            ".safetensors (docs/models.md)")
    if registry.entry(name).get("status") == "planned":
        log(f"note: no VibeBoard node loads {name} yet: {registry.entry(name).get('status_note', '')}")
    done = []
    targets = registry.local_targets(name, source)
    missing = [(p, rel) for p, rel in targets if not registry.locate(rel)]
    if missing and not hub_reachable(endpoint):
        raise PullError(f"could not download {name} from {repo}: " + OFFLINE_HINT.format(
            dest=os.path.join(root, missing[0][1])))
    for repo_path, rel in targets:
        final = os.path.join(root, rel)
        existing = registry.locate(rel)
        if existing and (repo_path is not None or os.listdir(existing)):
            log(f"present: {existing}")
            done.append(existing)
            continue
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        staging = os.path.join(parent, ".vb-download", os.path.basename(final) + ".part")
        ok = False
        try:
            os.makedirs(staging, exist_ok=True)
            if repo_path is not None:
                log(f"pull {repo}/{repo_path} → {final}")
                revision = registry.file_revision(src, repo_path)  # e.g. a hub PR holding the safetensors
                at = {"revision": revision} if revision else {}
                got = hf_hub_download(repo, repo_path, local_dir=staging, endpoint=endpoint, token=token, **at)
                if verify:
                    want = published_sha256(repo, [repo_path], endpoint, token, **at).get(repo_path)
                    if want:
                        have = sha256_file(got)
                        if have != want:
                            raise PullError(f"{repo_path}: checksum mismatch (got {have[:12]}…, "
                                            f"published {want[:12]}…); the download was discarded")
                        log(f"sha256 ok {have[:16]}…")
                    else:
                        have = None
                        log("no published checksum for this file (not stored with LFS)")
                os.replace(got, final)
                if verify and have:
                    record_checksum(final, have)
            else:
                log(f"pull {repo} ({', '.join(src.get('allow', ['all files']))}) → {final}")
                snapshot_download(repo, local_dir=staging, allow_patterns=src.get("allow"), endpoint=endpoint,
                                  token=token)
                shutil.rmtree(os.path.join(staging, ".cache"), ignore_errors=True)
                if verify:
                    _verify_tree(repo, staging, endpoint, token, log)
                if os.path.exists(final):
                    shutil.rmtree(final)
                os.replace(staging, final)
            ok = True
            done.append(final)
        except PullError:
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise PullError(_explain(exc, repo, final)) from exc
        finally:
            if ok or not keep_partial:
                shutil.rmtree(staging, ignore_errors=True)
            _prune_empty(os.path.join(parent, ".vb-download"))
            if not ok and not keep_partial:
                _prune_empty(parent, stop=root)
    return done


def _file_format(f: dict, src: dict) -> str:
    ext = os.path.splitext(f["path"])[1].lower()
    if f.get("format"):
        return f["format"]
    if ext in (".safetensors", ".sft"):
        return "safetensors"
    if ext in (".json", ".model", ".txt"):
        return "config"
    return src.get("format", ext.lstrip(".") or "file")


def plan(name: str, source: Optional[str] = None, root: Optional[str] = None, needs: bool = True) -> list:
    """What `pull NAME` would fetch, without touching the network: one row per file (repo, path, revision, where
    it goes, size, format, present), then the same for every model the entry `needs` (their default source)."""
    rows, seen, todo = [], set(), [(name, source, None)]
    root = root or runtime.models_directory()
    while todo:
        model, src_name, needed_by = todo.pop(0)
        if model in seen:
            continue
        seen.add(model)
        src_name, src = registry.source_of(model, src_name)
        sizes = {f["path"]: f.get("size_gb") for f in src.get("files", [])}
        formats = {f["path"]: _file_format(f, src) for f in src.get("files", [])}
        for repo_path, rel in registry.local_targets(model, src_name):
            rows.append({"model": model, "source": src_name, "needed_by": needed_by, "repo": src["repo"],
                         "path": repo_path, "revision": registry.file_revision(src, repo_path),
                         "dest": os.path.join(root, rel), "present": registry.locate(rel),
                         "size_gb": sizes.get(repo_path, src.get("size_gb")),
                         "format": formats.get(repo_path, "diffusers" if src.get("diffusers") else "folder")})
        if needs:
            todo += [(n, None, model) for n in registry.entry(model).get("needs", [])]
    return rows


def _verify_tree(repo: str, folder: str, endpoint, token, log) -> None:
    """Every downloaded file with a published LFS SHA-256 must match it."""
    files = [os.path.relpath(os.path.join(b, f), folder).replace(os.sep, "/")
             for b, _, fs in os.walk(folder) for f in fs]
    published = {}
    for i in range(0, len(files), 50):
        published.update(published_sha256(repo, files[i:i + 50], endpoint, token))
    checked = 0
    for rel in files:
        want = published.get(rel)
        if want:
            have = sha256_file(os.path.join(folder, rel))
            if have != want:
                raise PullError(f"{rel}: checksum mismatch (got {have[:12]}…, published {want[:12]}…); "
                                "the download was discarded")
            checked += 1
    log(f"sha256 ok for {checked} LFS file(s)")


def _prune_empty(path: str, stop: Optional[str] = None) -> None:
    """Remove empty folders we created (never `stop` itself)."""
    path = os.path.abspath(path)
    stop = os.path.abspath(stop) if stop else None
    while os.path.isdir(path) and not os.listdir(path) and path != stop:
        os.rmdir(path)
        if stop is None:
            break
        path = os.path.dirname(path)


def verify(name: str, source: Optional[str] = None, checksum: bool = False, comfyui: Optional[str] = None,
           log: Callable[[str], None] = print) -> bool:
    """Present files: readable safetensors headers, sizes near the registry's, recorded SHA-256 when asked."""
    ok = True
    for src_name, st in registry.status(name, comfyui).items():
        if source and src_name != source:
            continue
        for path in st["paths"]:
            try:
                if os.path.isfile(path) and path.endswith(".safetensors"):
                    from safetensors import safe_open
                    with safe_open(path, "pt") as f:
                        n = len(list(f.keys()))
                    log(f"ok   {path} ({n} tensors, {os.path.getsize(path) / 1e9:.2f} GB)")
                else:
                    log(f"ok   {path}")
                if checksum and os.path.isfile(path):
                    rec = recorded_checksum(path)
                    if rec is None:
                        log("     no recorded checksum (pulled elsewhere); skipped")
                    elif sha256_file(path) != rec["sha256"]:
                        log("BAD  checksum differs from the one recorded at pull time")
                        ok = False
            except Exception as exc:
                log(f"BAD  {path}: {type(exc).__name__}: {exc}")
                ok = False
        for rel in st["missing"]:
            log(f"miss {rel} ({src_name})")
    return ok
