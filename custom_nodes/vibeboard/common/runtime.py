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


def unique_output_path(directory: str, prefix: str, ext: str) -> tuple:
    """Next free `prefix_00001_.ext` in directory (ComfyUI's counter style). Returns (path, subfolder, name).

    `prefix` may contain a subfolder ("vibeboard/rack"); it must stay inside `directory`.
    """
    import os
    import re
    full = os.path.abspath(os.path.join(directory, prefix))
    if os.path.commonpath([full, os.path.abspath(directory)]) != os.path.abspath(directory):
        raise NodeInputError("save", "filename_prefix", f"'{prefix}' points outside the output folder")
    folder, base = os.path.split(full)
    os.makedirs(folder, exist_ok=True)
    pattern = re.compile(re.escape(base) + r"_(\d+)_\." + re.escape(ext) + "$")
    counter = 1
    for name in os.listdir(folder):
        match = pattern.match(name)
        if match:
            counter = max(counter, int(match.group(1)) + 1)
    while True:
        name = f"{base}_{counter:05}_.{ext}"
        path = os.path.join(folder, name)
        try:  # exclusive create: two workers never get the same file
            with open(path, "xb"):
                pass
            break
        except FileExistsError:
            counter += 1
    subfolder = os.path.relpath(folder, os.path.abspath(directory))
    return path, ("" if subfolder == "." else subfolder), name


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
    import os
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


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
