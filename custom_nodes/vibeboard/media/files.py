"""Files for the media nodes: listing inputs, resolving names safely, fingerprints, atomic writes.

No ComfyUI import: folders come from `common.runtime`, which asks the host.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Iterator, List

from ..common.paths import PathEscapeError, resolve_inside

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif", ".mpg", ".mpeg", ".ts", ".wmv",
                    ".flv")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")

# Hash whole files up to this size; above it size + mtime + head/tail blocks (hashing GBs on every queue is slow).
FULL_HASH_LIMIT = 256 * 1024 * 1024
_BLOCK = 1024 * 1024


# A combo file name that would leave its folder (absolute path, `..`, drive letter, a link leading out).
UnsafeNameError = PathEscapeError


def list_files(directory: str, extensions=VIDEO_EXTENSIONS) -> List[str]:
    """Sorted names of the media files directly in `directory` (like ComfyUI's LoadImage list: no recursion)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = [name for name in names
             if not name.startswith(".") and name.lower().endswith(extensions)
             and os.path.isfile(os.path.join(directory, name))]
    return sorted(found)


def split_annotation(name: str):
    """ComfyUI's annotated names: 'clip.mp4 [output]' → ('clip.mp4', 'output'); default folder 'input'."""
    name = name.strip()
    for kind in ("input", "output", "temp"):
        suffix = f" [{kind}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, "input"


def safe_join(directory: str, name: str) -> str:
    """Join a combo name under `directory` (resolved), refusing anything that escapes it.

    Sub-folders are allowed ("shots/a.mp4", as ComfyUI's upload with a subfolder produces); absolute
    paths, drive letters, `..` (even when it would land back inside) and links leading out are not.
    """
    if not name:
        raise UnsafeNameError("no file name given")
    return resolve_inside(directory, name, what="file name")


def file_fingerprint(path: str) -> str:
    """sha256 of the file (size + mtime + first/last MiB for files over FULL_HASH_LIMIT)."""
    digest = hashlib.sha256()
    stat = os.stat(path)
    with open(path, "rb") as handle:
        if stat.st_size <= FULL_HASH_LIMIT:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                digest.update(block)
        else:
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            digest.update(handle.read(_BLOCK))
            handle.seek(-_BLOCK, os.SEEK_END)
            digest.update(handle.read(_BLOCK))
    return digest.hexdigest()


def partial_path(final_path: str) -> str:
    folder, name = os.path.split(final_path)
    return os.path.join(folder, f".{name}.partial-{os.getpid()}")


@contextlib.contextmanager
def atomic_output(final_path: str) -> Iterator[str]:
    """Yield a temporary path next to `final_path`; rename it over `final_path` only on success.

    On failure the temporary file is removed, and so is an *empty* `final_path` (the placeholder that
    `runtime.unique_output_path` reserves), so a failed encode leaves nothing that looks like a result.
    """
    tmp = partial_path(final_path)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        with contextlib.suppress(OSError):
            if os.path.getsize(final_path) == 0:
                os.remove(final_path)
        raise
    os.replace(tmp, final_path)
