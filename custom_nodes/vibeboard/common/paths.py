"""Path containment: the one place that decides whether a path stays inside a folder.

Every path that does not come from our own code goes through here: names typed into nodes, names a client sends
(`/view`, `/upload/image`), and names read out of files (a memory bank's manifest, a sharded model's index, a
remote server's history). A file's content is as untrusted as a client: a client can plant a manifest with
`/upload/image?type=output`. Containment is decided on resolved paths (symlinks followed), so a link that points
out of the folder is refused too.

No ComfyUI import; no knowledge of nodes or HTTP: callers turn `PathEscapeError` into their own error shape
(a NodeInputError naming node and input, an ApiError with a 403).
"""
from __future__ import annotations

import os
from typing import List


class PathEscapeError(ValueError):
    """A name that is not a plain relative path, or that resolves (symlinks followed) outside its folder."""


def is_inside(path: str, root: str) -> bool:
    """True when `path` lies inside `root` (or is `root`), both resolved with symlinks followed."""
    real_root = os.path.realpath(root)
    try:
        return os.path.commonpath([os.path.realpath(path), real_root]) == real_root
    except ValueError:  # another drive on Windows
        return False


def relative_parts(name, what: str = "name", allow_subdirs: bool = True) -> List[str]:
    """The parts of a client- or file-given relative name. Refuses non-strings, empty names, NUL bytes, absolute
    paths, drive letters and `..` (even when it would land back inside), and sub-folders unless allowed."""
    if not isinstance(name, str):
        raise PathEscapeError(f"{what} must be a string, got {type(name).__name__}")
    if "\x00" in name:
        raise PathEscapeError(f"{what} contains a NUL byte")
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise PathEscapeError(f"{what} '{name}' is an absolute path; it must be relative to its folder")
    parts = [p for p in normalized.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathEscapeError(f"{what} '{name}' contains '..'; it must stay inside its folder")
    if not parts:
        raise PathEscapeError(f"{what} is empty")
    if not allow_subdirs and len(parts) > 1:
        raise PathEscapeError(f"{what} '{name}' must be a plain file name, not a path")
    return parts


def resolve_inside(root: str, name, what: str = "name", allow_subdirs: bool = True) -> str:
    """`root/name` resolved (symlinks followed); PathEscapeError when `name` is not a plain relative name or the
    result leaves `root`. The file need not exist (a target about to be written is checked the same way)."""
    parts = relative_parts(name, what, allow_subdirs)
    real_root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(real_root, *parts))
    if not is_inside(full, real_root):
        raise PathEscapeError(f"{what} '{name}' resolves outside its folder (a symbolic link leads out of it)")
    return full


def check_inside(path: str, root: str, what: str = "path") -> str:
    """`path` resolved; PathEscapeError unless it lies inside `root` (symlinks followed on both)."""
    real = os.path.realpath(path)
    if not is_inside(real, root):
        raise PathEscapeError(f"{what} '{path}' resolves outside {root}")
    return real


def makedirs_inside(root: str, folder: str, what: str = "folder") -> str:
    """Create `folder` (an absolute path meant to lie inside `root`) without following a symlinked sub-folder
    out of `root`: the check is made after creation, on the resolved path, so a link planted anywhere on the
    way is caught. Returns the resolved folder."""
    check_inside(folder, root, what)  # refuse before creating anything outside
    os.makedirs(folder, exist_ok=True)
    return check_inside(folder, root, what)
