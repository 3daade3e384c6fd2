"""The embedded executor: runs an API prompt with ComfyUI's semantics, no ComfyUI needed.

Only what output nodes need runs, depth-first in dependency order; results are cached between runs in one
process under a key built like ComfyUI's (class, constant inputs, IS_CHANGED, upstream keys); list
semantics (INPUT_IS_LIST / OUTPUT_IS_LIST), lazy inputs (check_lazy_status), `{"ui", "result"}` returns,
progress and interrupt go through vibeboard.common.runtime. Events use ComfyUI's websocket message shapes.
Nodes run under `torch.inference_mode()` like in ComfyUI (vibeboard.common.grad says how a training node opts out).
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import inspect
import math
import os
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from typing import Callable, Dict, List, Optional

from vibeboard.common import grad, runtime

from .results import ExecutionResult, execution_error
from .graph import declared_inputs, hidden_inputs, is_link, lazy_inputs
from .validation import unwrap, validate_prompt

EventCallback = Callable[[str, dict], None]


class DependencyCycleError(RuntimeError):
    pass


def _now_ms() -> int:
    return int(time.time() * 1000)


class Executor:
    def __init__(self, registry, output_dir: Optional[str] = None, input_dir: Optional[str] = None,
                 temp_dir: Optional[str] = None, models_dir: Optional[str] = None, cache="classic",
                 restrict_paths: Optional[bool] = None):
        """cache: "classic" (keep only what the latest prompt used, like ComfyUI), "none", or an int N
        (LRU of N node results across prompts, for servers that alternate workflows)."""
        self.registry = registry
        self.dirs = {"output": os.path.abspath(output_dir or "output"),
                     "input": os.path.abspath(input_dir or "input"),
                     "temp": os.path.abspath(temp_dir or "temp")}
        self.models_dir = models_dir
        self.cache_mode = cache
        # True on servers: file paths typed into nodes must stay in the host folders (None: the process default)
        self.restrict_paths = restrict_paths
        self._cache: "OrderedDict[str, tuple]" = OrderedDict()  # signature -> (outputs, ui)
        self._objects: Dict[tuple, object] = {}
        self._interrupt = threading.Event()
        self._lock = threading.Lock()  # one prompt at a time per executor
        self._clear_pending = False  # clear_cache() asked for while a prompt was running

    # -- public API ----------------------------------------------------------------------------
    def interrupt(self) -> None:
        self._interrupt.set()

    def clear_cache(self) -> None:
        """Drop cached results and node instances. While a prompt runs (POST /free from the server thread)
        the clear waits until that prompt is done, like ComfyUI's free_memory flag, instead of racing it."""
        if not self._lock.acquire(blocking=False):
            self._clear_pending = True
            return
        try:
            self._clear_now()
        finally:
            self._lock.release()

    def _clear_now(self) -> None:
        self._clear_pending = False
        self._cache.clear()
        self._objects.clear()

    def execute(self, prompt: dict, prompt_id: Optional[str] = None, extra_data: Optional[dict] = None,
                outputs: Optional[List[str]] = None, on_event: Optional[EventCallback] = None,
                client_id: Optional[str] = None) -> ExecutionResult:
        with self._lock:
            if self._clear_pending:
                self._clear_now()
            policy = (runtime.path_policy(self.restrict_paths) if self.restrict_paths is not None
                      else contextlib.nullcontext())
            try:
                # Every node function (and IS_CHANGED / check_lazy_status) under torch.inference_mode(), exactly
                # as ComfyUI's PromptExecutor: nodes that train opt out with vibeboard.common.grad.training_mode.
                with policy, grad.node_mode():
                    return _Run(self, copy.deepcopy(prompt), prompt_id or str(uuid.uuid4()), extra_data or {},
                                outputs, on_event, client_id).run()
            finally:
                if self._clear_pending:  # asked for during this prompt: free now, not at the next one
                    self._clear_now()


class _Run:
    """One prompt's execution (state that must not leak between prompts)."""

    def __init__(self, ex: Executor, prompt, prompt_id, extra_data, outputs, on_event, client_id):
        self.ex = ex
        self.prompt = prompt
        self.prompt_id = prompt_id
        self.extra_data = dict(extra_data)
        if client_id:
            self.extra_data["client_id"] = client_id
        self.requested_outputs = outputs
        self.on_event = on_event
        self.result = ExecutionResult(prompt_id=prompt_id, prompt=prompt, extra_data=self.extra_data,
                                      dirs=dict(ex.dirs))
        self.values: Dict[str, tuple] = {}  # node id -> (outputs per slot as lists, ui)
        self.signatures: Dict[str, str] = {}
        self.lazy_requested: Dict[str, set] = {}

    def emit(self, event: str, data: dict) -> None:
        if event.startswith("execution_"):
            self.result.messages.append([event, data])
        if self.on_event is not None:
            try:
                self.on_event(event, data)
            except Exception:  # a broken listener must not break the run
                pass

    def run(self) -> ExecutionResult:
        ex = self.ex
        ex._interrupt.clear()  # ComfyUI resets the flag at the start of each prompt
        runtime.set_host_dirs(output=ex.dirs["output"], input=ex.dirs["input"], temp=ex.dirs["temp"],
                              models=ex.models_dir)
        validation = validate_prompt(self.prompt, ex.registry, self.requested_outputs)
        self.result.node_errors = validation.node_errors
        if not validation.ok:
            self.result.status = "invalid"
            self.result.error = validation.response()
            self.result.validation_summary = validation.summary()
            self.emit("executing", {"node": None, "prompt_id": self.prompt_id})
            return self.result
        if self._models_missing(validation.good_outputs):
            return self.result
        self.result.outputs_to_execute = list(validation.good_outputs)
        started = time.perf_counter()
        self.emit("execution_start", {"prompt_id": self.prompt_id, "timestamp": _now_ms()})
        try:
            for node_id in self.prompt:
                try:
                    self._signature(node_id)
                except (KeyError, DependencyCycleError, RecursionError):
                    # only possible for nodes no valid output needs (validation checked those): skip them
                    pass
            self._trim_cache()
            cached = [nid for nid, sig in self.signatures.items() if sig in ex._cache]
            self.result.cached_at_start = cached
            self.emit("execution_cached", {"nodes": cached, "prompt_id": self.prompt_id, "timestamp": _now_ms()})
            for output_id in validation.good_outputs:
                self._evaluate(output_id)
            self.result.status = "success"
            self.emit("execution_success", {"prompt_id": self.prompt_id, "timestamp": _now_ms()})
        except runtime.InterruptProcessing:
            self.result.status = "interrupted"
            node = self.result.current_node
            data = {"prompt_id": self.prompt_id, "node_id": node,
                    "node_type": self.prompt.get(node, {}).get("class_type") if node else None,
                    "executed": list(self.result.executed), "timestamp": _now_ms()}
            self.result.error = data
            self.emit("execution_interrupted", data)
        except _NodeFailure as failure:
            self.result.status = "error"
            self.result.error = failure.data
            self.emit("execution_error", failure.data)
        finally:
            runtime.set_host_hooks(None, None)
            self.result.total_seconds = time.perf_counter() - started
            self.emit("executing", {"node": None, "prompt_id": self.prompt_id})
        return self.result

    # -- cache keys ----------------------------------------------------------------------------
    def _signature(self, node_id: str, stack=()) -> str:
        if node_id in self.signatures:
            return self.signatures[node_id]
        if node_id in stack:
            raise DependencyCycleError(node_id)
        node = self.prompt[node_id]
        node_class = self.ex.registry.get(node["class_type"])
        parts = [node["class_type"], self._is_changed(node_id, node_class)]
        hidden = hidden_inputs(node_class).values()
        if getattr(node_class, "NOT_IDEMPOTENT", False) or "UNIQUE_ID" in hidden:
            parts.append(("id", node_id))
        for name in sorted(node.get("inputs", {})):
            value = node["inputs"][name]
            if is_link(value):
                parts.append((name, "link", self._signature(value[0], stack + (node_id,)), value[1]))
            else:
                parts.append((name, repr(unwrap(value))))
        sig = hashlib.sha256(repr(parts).encode()).hexdigest()
        self.signatures[node_id] = sig
        return sig

    def _is_changed(self, node_id, node_class):
        func = getattr(node_class, "IS_CHANGED", None)
        if func is None:
            return None
        constants = {k: unwrap(v) for k, v in self.prompt[node_id].get("inputs", {}).items() if not is_link(v)}
        try:
            value = func(**_accepted_kwargs(func, constants))
        except Exception:
            value = float("nan")
        if isinstance(value, float) and math.isnan(value):
            return ("changed", uuid.uuid4().hex)  # NaN means "always re-run": never equal to anything
        return repr(value)

    def _trim_cache(self):
        ex = self.ex
        # Node instances live as long as their node is in the current prompt (ComfyUI's objects cache).
        current = {(nid, node.get("class_type")) for nid, node in self.prompt.items()}
        for key in [k for k in ex._objects if k not in current]:
            del ex._objects[key]
        if ex.cache_mode == "none":
            ex._cache.clear()
        elif ex.cache_mode == "classic":
            keep = set(self.signatures.values())
            for key in [k for k in ex._cache if k not in keep]:
                del ex._cache[key]

    def _store(self, node_id, value):
        ex = self.ex
        self.values[node_id] = value
        if ex.cache_mode == "none":
            return
        sig = self.signatures[node_id]
        ex._cache[sig] = value
        ex._cache.move_to_end(sig)
        if isinstance(ex.cache_mode, int):
            while len(ex._cache) > max(ex.cache_mode, 1):
                ex._cache.popitem(last=False)

    # -- scheduling ----------------------------------------------------------------------------
    def _evaluate(self, target: str) -> None:
        """Depth-first: a node runs once everything it needs (including requested lazy inputs) is done."""
        stack = [target]
        expanding = set()  # nodes whose inputs were pushed: exactly the ancestors of what is above them
        while stack:
            node_id = stack[-1]
            if node_id in self.values:
                stack.pop()
                continue
            sig = self.signatures[node_id]
            if sig in self.ex._cache:
                self._use_cached(node_id, sig)
                stack.pop()
                continue
            missing = [src for src in self._needed_sources(node_id) if src not in self.values]
            if missing:
                for src in missing:
                    if src in expanding:  # a sibling merely waiting in the stack is not a cycle
                        raise self._failure(node_id, DependencyCycleError(f"dependency cycle through node {src}"))
                expanding.add(node_id)
                stack.extend(missing)
                continue
            if self._request_lazy(node_id):
                continue  # newly requested lazy inputs were added to the needed set
            self._execute_node(node_id)
            stack.pop()

    def _lazy_inputs(self, node_class) -> set:
        return lazy_inputs(node_class)

    def _needed_sources(self, node_id) -> List[str]:
        node = self.prompt[node_id]
        lazy = self._lazy_inputs(self.ex.registry.get(node["class_type"]))
        requested = self.lazy_requested.get(node_id, set())
        return [v[0] for name, v in node.get("inputs", {}).items()
                if is_link(v) and (name not in lazy or name in requested)]

    def _request_lazy(self, node_id) -> bool:
        node = self.prompt[node_id]
        node_class = self.ex.registry.get(node["class_type"])
        lazy = self._lazy_inputs(node_class)
        pending = {name for name, v in node.get("inputs", {}).items()
                   if name in lazy and is_link(v) and v[0] not in self.values}
        if not pending:
            return False
        obj = self._instance(node_id, node_class)
        check = getattr(obj, "check_lazy_status", None)
        if check is None:
            return False  # as in ComfyUI: nothing asks for them, so they arrive as None (or cached values)
        inputs = self._gather_inputs(node_id, node_class, allow_missing=True)
        try:
            wanted = set()
            for names in _map_over_list(check, inputs, getattr(node_class, "INPUT_IS_LIST", False)):
                wanted.update(names or [])
        except Exception as exc:
            raise self._failure(node_id, exc, inputs)
        new = (wanted & pending) - self.lazy_requested.get(node_id, set())
        if new:
            self.lazy_requested.setdefault(node_id, set()).update(new)
            return True
        return False

    # -- running one node ----------------------------------------------------------------------
    def _instance(self, node_id, node_class):
        key = (node_id, self.prompt[node_id]["class_type"])
        if key not in self.ex._objects:
            self.ex._objects[key] = node_class()
        return self.ex._objects[key]

    def _gather_inputs(self, node_id, node_class, allow_missing=False) -> Dict[str, list]:
        node = self.prompt[node_id]
        declared = set(declared_inputs(node_class))
        data = {}
        for name, value in node.get("inputs", {}).items():
            if is_link(value):
                if value[0] not in self.values and self.signatures.get(value[0]) in self.ex._cache:
                    self._use_cached(value[0], self.signatures[value[0]])  # unrequested but already computed
                if value[0] in self.values:
                    data[name] = self.values[value[0]][0][value[1]]
                elif allow_missing or name in self._lazy_inputs(node_class):
                    data[name] = [None]
            elif name in declared:
                data[name] = [unwrap(value)]
        for name, kind in hidden_inputs(node_class).items():
            if kind == "PROMPT":
                data[name] = [self.prompt]
            elif kind == "UNIQUE_ID":
                data[name] = [node_id]
            elif kind == "EXTRA_PNGINFO":
                data[name] = [self.extra_data.get("extra_pnginfo")]
            elif kind == "DYNPROMPT":
                data[name] = [None]
        return data

    def _use_cached(self, node_id, sig):
        value = self.ex._cache[sig]
        self.values[node_id] = value
        self.result.cached.append(node_id)
        ui = value[1]
        if ui:
            self.result.outputs[node_id] = ui
            self.emit("executed", {"node": node_id, "display_node": node_id, "output": ui,
                                   "prompt_id": self.prompt_id})

    def _execute_node(self, node_id):
        ex = self.ex
        if ex._interrupt.is_set():
            self.result.current_node = node_id
            raise runtime.InterruptProcessing("interrupted")
        node = self.prompt[node_id]
        node_class = ex.registry.get(node["class_type"])
        self.result.current_node = node_id
        self.emit("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id})
        inputs = self._gather_inputs(node_id, node_class)

        def progress(value, total, preview=None):
            self.emit("progress", {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id})

        runtime.set_host_hooks(progress, ex._interrupt.is_set)
        runtime.track_reserved_outputs()
        started = time.perf_counter()
        try:
            obj = self._instance(node_id, node_class)
            func = getattr(obj, node_class.FUNCTION)
            returns = _map_over_list(func, inputs, getattr(node_class, "INPUT_IS_LIST", False))
            outputs, ui = _merge_returns(node_class, returns)
        except runtime.InterruptProcessing:
            runtime.discard_empty_reserved()  # a save cut short leaves no empty file that looks like a result
            raise
        except Exception as exc:
            runtime.discard_empty_reserved()
            raise self._failure(node_id, exc, inputs)
        finally:
            runtime.set_host_hooks(None, None)
            runtime.track_reserved_outputs(False)
        self.result.timings[node_id] = time.perf_counter() - started
        self.result.executed.append(node_id)
        self._store(node_id, (outputs, ui))
        if ui:
            self.result.outputs[node_id] = ui
            self.emit("executed", {"node": node_id, "display_node": node_id, "output": ui,
                                   "prompt_id": self.prompt_id})

    def _models_missing(self, outputs) -> bool:
        """Every model file the run needs, checked before any node runs: all missing ones in one error."""
        from vibeboard.models import preflight
        items = preflight.missing(self.prompt, outputs)
        if not items:
            return False
        err = preflight.MissingModelsError(items)
        self.result.status = "invalid"
        self.result.node_errors = preflight.validation_errors(items)
        self.result.error = {"error": {"type": "model_missing", "message": f"{len(items)} model file(s) missing",
                                       "details": str(err), "extra_info": {}},
                             "node_errors": self.result.node_errors}
        self.result.validation_summary = str(err)
        self.emit("executing", {"node": None, "prompt_id": self.prompt_id})
        return True

    def _failure(self, node_id, exc, inputs=None) -> "_NodeFailure":
        node = self.prompt.get(node_id, {})
        current_inputs = {}
        for name, values in (inputs or {}).items():
            if name in ("prompt",) or not isinstance(values, list):
                continue
            current_inputs[name] = [_describe(v) for v in values]
        data = execution_error(
            self.prompt_id, str(exc), f"{type(exc).__module__}.{type(exc).__name__}".replace("builtins.", ""),
            node_id=node_id, node_type=node.get("class_type"), executed=self.result.executed,
            traceback=traceback.format_exception(type(exc), exc, exc.__traceback__),
            current_inputs=current_inputs, current_outputs=self.values)
        return _NodeFailure(data)


class _NodeFailure(Exception):
    def __init__(self, data):
        super().__init__(data["exception_message"])
        self.data = data


def _accepted_kwargs(func, kwargs: dict) -> dict:
    params = inspect.signature(func).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def _call(func, kwargs):
    result = func(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable):
    return await awaitable


def _map_over_list(func, inputs: Dict[str, list], input_is_list: bool) -> list:
    """ComfyUI list semantics: one call with whole lists, or one call per index (short lists repeat)."""
    if input_is_list:
        return [_call(func, inputs)]
    count = max((len(v) for v in inputs.values()), default=1)
    if any(len(v) == 0 for v in inputs.values()):
        count = 0
    results = []
    for index in range(max(count, 0) if inputs else 1):
        runtime.check_interrupt()
        results.append(_call(func, {k: v[min(index, len(v) - 1)] for k, v in inputs.items()}))
    return results


def _merge_returns(node_class, returns: list):
    n_out = len(getattr(node_class, "RETURN_TYPES", ()))
    is_list = getattr(node_class, "OUTPUT_IS_LIST", None) or (False,) * n_out
    outputs = [[] for _ in range(n_out)]
    ui: dict = {}
    for ret in returns:
        values = ret
        if isinstance(ret, dict):
            for key, items in (ret.get("ui") or {}).items():
                ui.setdefault(key, [])
                ui[key].extend(items if isinstance(items, (list, tuple)) else [items])
            values = ret.get("result", ())
        if values is None:
            values = ()
        if not isinstance(values, (tuple, list)):
            raise TypeError(f"{node_class.__name__}.{node_class.FUNCTION} must return a tuple, got "
                            f"{type(values).__name__}")
        if n_out and len(values) != n_out:
            raise TypeError(f"{node_class.__name__} returned {len(values)} values, RETURN_TYPES declares {n_out}")
        for slot, value in enumerate(values):
            if is_list[slot]:
                outputs[slot].extend(value)
            else:
                outputs[slot].append(value)
    return outputs, ui


def _describe(value):
    """Short, JSON-safe description of an input value for error reports."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__}{list(shape)} {getattr(value, 'dtype', '')}".strip()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not isinstance(value, str) or len(value) < 200 else value[:200] + "…"
    if isinstance(value, dict):
        return {k: _describe(v) for k, v in list(value.items())[:8]}
    return type(value).__name__
