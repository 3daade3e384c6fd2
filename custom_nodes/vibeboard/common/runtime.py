"""Where a node runs: inside real ComfyUI, inside VibeBoard's embedded executor, or in a plain script.

Nodes call `progress_bar(total)` and `check_interrupt()`; this module forwards them to the host.
The embedded executor installs its hooks with `set_host_hooks`; inside ComfyUI we use `comfy.*` lazily.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import Callable, Optional

_local = threading.local()


class InterruptProcessing(Exception):
    """Raised inside a node when the user interrupted the run (ComfyUI's InterruptProcessingException twin)."""


class NodeInputError(ValueError):
    """Bad input given to a node: the message names the node and the input."""

    def __init__(self, node: str, input_name: str, message: str):
        self.node = node
        self.input_name = input_name
        super().__init__(f"{node}: input '{input_name}': {message}")


def node_label(node) -> str:
    """The name errors use for a node: its display name, exactly as the user sees it on the canvas. One place for
    every label: the NODE_DISPLAY_NAME_MAPPINGS of the node's own module (found from the class, so it works inside
    ComfyUI and the embedded runner alike); the class name when the module has none."""
    import sys
    cls = node if isinstance(node, type) else type(node)
    names = getattr(sys.modules.get(cls.__module__), "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
    return names.get(cls.__name__, cls.__name__)


def set_host_hooks(progress: Optional[Callable[[int, int, object], None]],
                   interrupt: Optional[Callable[[], bool]]) -> None:
    """Called by the embedded executor around each node call (per thread)."""
    _local.progress = progress
    _local.interrupt = interrupt


def _embedded_hooks():
    return getattr(_local, "progress", None), getattr(_local, "interrupt", None)


def check_interrupt() -> None:
    """Raise InterruptProcessing if the host asked to stop. Cheap: call it inside long loops."""
    _, interrupt = _embedded_hooks()
    if interrupt is not None:
        if interrupt():
            raise InterruptProcessing("interrupted")
        return
    try:
        import comfy.model_management as mm  # only present inside ComfyUI
    except Exception:
        return
    mm.throw_exception_if_processing_interrupted()


class ProgressBar:
    """Same surface as comfy.utils.ProgressBar: update(n) and update_absolute(value, total, preview)."""

    def __init__(self, total: int):
        self.total = max(int(total), 1)
        self.current = 0
        self._comfy = None
        progress, _ = _embedded_hooks()
        self._hook = progress
        if progress is None:
            try:
                import comfy.utils
                self._comfy = comfy.utils.ProgressBar(self.total)
            except Exception:
                self._comfy = None

    def update_absolute(self, value: int, total: Optional[int] = None, preview=None) -> None:
        if total is not None:
            self.total = max(int(total), 1)
        self.current = min(int(value), self.total)
        if self._hook is not None:
            self._hook(self.current, self.total, preview)
        elif self._comfy is not None:
            self._comfy.update_absolute(self.current, self.total, preview)
        check_interrupt()

    def update(self, value: int = 1) -> None:
        self.update_absolute(self.current + value)


def progress_bar(total: int) -> ProgressBar:
    return ProgressBar(total)


# --- folders -------------------------------------------------------------------------------------
# Embedded executor: set by the runner. Inside ComfyUI: folder_paths. Plain scripts: ./output etc.
_dirs: dict = {}


def set_host_dirs(output: Optional[str] = None, input: Optional[str] = None,
                  temp: Optional[str] = None, models: Optional[str] = None) -> None:
    for key, value in (("output", output), ("input", input), ("temp", temp), ("models", models)):
        if value is not None:
            _dirs[key] = value


def _directory(kind: str) -> str:
    import os
    if kind in _dirs:
        path = _dirs[kind]
    else:
        path = None
        if kind != "models":
            try:
                import folder_paths  # ComfyUI
                path = getattr(folder_paths, f"get_{kind}_directory")()
            except Exception:
                path = None
        else:
            path = os.environ.get("VIBEBOARD_MODELS_DIR")
            if path is None:
                try:
                    import folder_paths
                    path = folder_paths.models_dir
                except Exception:
                    path = None
        if path is None:
            path = os.path.abspath(kind)
    os.makedirs(path, exist_ok=True)
    return path


def output_directory() -> str:
    return _directory("output")


def input_directory() -> str:
    return _directory("input")


def temp_directory() -> str:
    return _directory("temp")


def models_directory() -> str:
    return _directory("models")


MAX_PREFIX_CHARS = 1024  # a file name prefix with sub-folders; longer is a mistake (or an attack), not a name
MAX_NAME_BYTES = 200     # one path component; the file system's limit is 255 and the counter adds to it


def unique_output_path(directory: str, prefix: str, ext: str, node: str = "save",
                       input_name: str = "filename_prefix") -> tuple:
    """Next free `prefix_00001_.ext` in directory (ComfyUI's counter style). Returns (path, subfolder, name).

    `prefix` may contain a subfolder ("vibeboard/rack"); it must stay inside `directory` with symlinks followed,
    so a linked sub-folder cannot lead a write out of the output folder. The file is created empty (exclusive
    create, so two workers never get the same name); write it with `media.files.atomic_output`, which removes
    the placeholder again when the write fails. Errors are NodeInputErrors naming `node` and `input_name`.
    """
    import os
    from .paths import PathEscapeError, check_inside
    text = prefix if isinstance(prefix, str) else ""
    if len(text) > MAX_PREFIX_CHARS:
        raise NodeInputError(node, input_name, f"is {len(text)} characters long; the limit is {MAX_PREFIX_CHARS}")
    if "\x00" in text:
        raise NodeInputError(node, input_name, "contains a NUL byte")
    root = os.path.realpath(directory)
    full = os.path.abspath(os.path.join(root, text or "ComfyUI"))
    if os.path.commonpath([full, root]) != root or full == root:  # lexically: '..' past the folder
        raise NodeInputError(node, input_name, f"'{text}' points outside the output folder")
    folder, base = os.path.split(full)
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
           for part in os.path.relpath(full, root).split(os.sep)):
        raise NodeInputError(node, input_name, f"a folder or file name in it is longer than {MAX_NAME_BYTES} bytes")
    try:
        check_inside(folder, root)  # before creating anything: an existing link on the way is refused
        os.makedirs(folder, exist_ok=True)
        folder = check_inside(folder, root)
    except PathEscapeError:
        raise NodeInputError(node, input_name, f"'{text}' leads out of the output folder through a symbolic "
                                               "link") from None
    except OSError as exc:
        raise NodeInputError(node, input_name, f"cannot create its folder: {exc}") from None
    # the highest counter so far, by plain string tests (no regex compiled from user text)
    head, tail = base + "_", "_." + ext
    counter = 1
    for name in os.listdir(folder):
        if name.startswith(head) and name.endswith(tail):
            digits = name[len(head):len(name) - len(tail)]
            if digits.isdigit() and digits.isascii():
                counter = max(counter, int(digits) + 1)
    while True:
        name = f"{base}_{counter:05}_.{ext}"
        path = os.path.join(folder, name)
        try:  # exclusive create: two workers never get the same file
            with open(path, "xb"):
                pass
            break
        except FileExistsError:
            counter += 1
    reserved = getattr(_local, "reserved", None)
    if reserved is not None:
        reserved.append(path)
    subfolder = os.path.relpath(folder, root)
    return path, ("" if subfolder == "." else subfolder), name


def track_reserved_outputs(on: bool = True) -> None:
    """The host starts (on) / stops (off) recording the files unique_output_path reserves in this thread, so a
    node that fails after reserving a name leaves no empty placeholder (`discard_empty_reserved`)."""
    _local.reserved = [] if on else None


def discard_empty_reserved() -> list:
    """Remove the reserved files that are still empty (the node failed before writing them); returns them."""
    import os
    removed = []
    for path in getattr(_local, "reserved", None) or []:
        try:
            if os.path.getsize(path) == 0:
                os.remove(path)
                removed.append(path)
        except OSError:
            pass
    _local.reserved = []
    return removed


# --- file paths typed into nodes -----------------------------------------------------------------
# Locally a user may point a node at any file. A server that runs other people's workflows restricts file
# inputs to its own folders (input, output, temp, models and any extra roots), so a workflow can't read
# /etc/passwd through a "video_path" widget.
# A server passes its policy per run (`with path_policy(True): ...` in the thread that runs or validates the
# prompt), so nothing process-wide changes; set_path_policy only changes the default outside such a block.
_path_policy = {"restrict": False, "extra_roots": ()}
_run_path_policy = contextvars.ContextVar("vibeboard_path_policy", default=None)


def set_path_policy(restrict: bool, extra_roots=()) -> None:
    _path_policy["restrict"] = bool(restrict)
    _path_policy["extra_roots"] = tuple(extra_roots)


@contextlib.contextmanager
def path_policy(restrict: bool, extra_roots=()):
    token = _run_path_policy.set({"restrict": bool(restrict), "extra_roots": tuple(extra_roots)})
    try:
        yield
    finally:
        _run_path_policy.reset(token)


def _policy() -> dict:
    return _run_path_policy.get() or _path_policy


def paths_restricted() -> bool:
    return _policy()["restrict"]


def _allowed_roots():
    import os
    roots = [output_directory(), input_directory(), temp_directory(), models_directory()]
    try:
        import folder_paths  # inside ComfyUI: its model folders too
        roots += [p for paths, _exts in folder_paths.folder_names_and_paths.values() for p in paths]
    except Exception:
        pass
    roots += list(_policy()["extra_roots"])
    return [os.path.realpath(r) for r in roots]


def _inside(path: str, root: str) -> bool:
    from .paths import is_inside  # the one containment test (symlinks followed)
    return is_inside(path, root)


def user_path(node: str, input_name: str, value: str, base: str) -> str:
    """A path typed into a node: absolute, or relative to `base`. Under a restricted policy it must resolve
    (symlinks followed) inside the host's folders; otherwise a NodeInputError names the node and input."""
    import os
    text = os.path.expanduser((value or "").strip())
    path = os.path.abspath(text if os.path.isabs(text) else os.path.join(base, text))
    if _policy()["restrict"]:
        real = os.path.realpath(path)
        if not any(_inside(real, root) for root in _allowed_roots()):
            raise NodeInputError(node, input_name, f"'{value}' is outside the folders this server allows "
                                 "(input, output, temp, models)")
    return path


def allowed_by_policy(path: str) -> bool:
    """Whether the path policy lets a node read or write `path` (resolved, symlinks followed)."""
    import os
    if not paths_restricted():
        return True
    real = os.path.realpath(path)
    return any(_inside(real, root) for root in _allowed_roots())


def content_path(folder: str, name, what: str = "file name") -> str:
    """A file named inside another file (a sharded model's index, a config) under `folder`: a plain relative
    name, and, under a restricted policy, resolved (symlinks followed) inside the server's folders — the same
    confinement as a path typed into a node. Model folders may be symlink farms (a Hugging Face cache links
    every file to its blob), so links are allowed as long as they stay within the allowed folders.
    Raises paths.PathEscapeError."""
    import os
    from .paths import PathEscapeError, relative_parts
    path = os.path.join(folder, *relative_parts(name, what))
    if not allowed_by_policy(path):
        raise PathEscapeError(f"{what} '{name}' in {folder} resolves outside the folders this server allows")
    return path
