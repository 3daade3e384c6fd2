"""Validate an API prompt before running it, with ComfyUI's error shapes (`error` + `node_errors`)."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .graph import declared_inputs, input_spec, is_link  # noqa: F401  (one home; re-exported for older imports)


def unwrap(value):
    if isinstance(value, dict) and "__value__" in value:
        return value["__value__"]
    return value


def types_match(received, expected) -> bool:
    if isinstance(expected, (list, tuple)):  # combo input: a combo output or anything declared "*"
        return isinstance(received, (list, tuple)) or received in ("COMBO", "*")
    if isinstance(received, (list, tuple)):
        return expected in ("COMBO", "*")
    if received == "*" or expected == "*" or received == expected:
        return True
    return bool(set(str(received).split(",")) & set(str(expected).split(",")))


def _error(kind, message, details="", **extra):
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _validate_inputs_params(node_class):
    func = getattr(node_class, "VALIDATE_INPUTS", None)
    if func is None:
        return None, set(), False
    params = inspect.signature(func).parameters
    takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
    return func, set(params) - {"cls", "self"}, takes_all


@dataclass
class ValidationResult:
    ok: bool
    error: Optional[dict] = None
    good_outputs: List[str] = field(default_factory=list)
    node_errors: Dict[str, dict] = field(default_factory=dict)

    def response(self) -> dict:
        """ComfyUI's 400 body for POST /prompt."""
        return {"error": self.error, "node_errors": self.node_errors}

    def summary(self) -> str:
        """Readable text: one line per problem, naming node, class and input."""
        lines = []
        if self.error:
            head = self.error.get("message", "invalid prompt")
            if self.error.get("details") and not self.node_errors:
                head += f": {self.error['details']}"
            lines.append(head)
        for node_id, info in self.node_errors.items():
            for err in info["errors"]:
                where = f"node {node_id} ({info['class_type']})"
                name = err.get("extra_info", {}).get("input_name")
                if name:
                    where += f" input '{name}'"
                detail = err.get("details") or ""
                text = err["message"] if not detail or detail == name else f"{err['message']} — {detail}"
                lines.append(f"  {where}: {text}")
        return "\n".join(lines)


def validate_prompt(prompt: dict, registry, partial_targets: Optional[List[str]] = None) -> ValidationResult:
    """Check classes, inputs, links, types, ranges and cycles. Casts constants in place, like ComfyUI."""
    if not isinstance(prompt, dict) or not prompt:
        return ValidationResult(False, _error("invalid_prompt", "Prompt is empty or not an object"))
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            return ValidationResult(False, _error(
                "invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'"))
        if node["class_type"] not in registry:
            return ValidationResult(False, _error(
                "invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.",
                f"Node ID '#{node_id}'"))
        if not isinstance(node.get("inputs", {}), dict):
            return ValidationResult(False, _error("invalid_prompt", "Node inputs must be an object",
                                                  f"Node ID '#{node_id}'"))

    outputs = [nid for nid, node in prompt.items()
               if getattr(registry.get(node["class_type"]), "OUTPUT_NODE", False) is True]
    if partial_targets is not None:
        outputs = [nid for nid in outputs if nid in set(map(str, partial_targets))]
    if not outputs:
        return ValidationResult(False, _error("prompt_no_outputs", "Prompt has no outputs",
                                              "add an output node such as SaveImage or VBSaveVideo"))

    validator = _Validator(prompt, registry)
    good = []
    try:
        for output_id in outputs:
            if validator.validate(output_id):
                good.append(output_id)
    except RecursionError:
        return ValidationResult(False, _error("invalid_prompt", "Workflow graph is nested too deeply",
                                              "a chain of linked nodes is too long (several hundred nodes)"))
    node_errors = {}
    for node_id, errs in validator.errors.items():
        if errs:
            dependents = [o for o in outputs if o in validator.dependents.get(node_id, set())]
            node_errors[node_id] = {"errors": errs, "dependent_outputs": dependents,
                                    "class_type": prompt[node_id]["class_type"]}
    if good:
        return ValidationResult(True, None, good, node_errors)
    details = "\n".join(f"{info['class_type']} {nid}: " + "; ".join(
        e["message"] + (f": {e['details']}" if e.get("details") else "") for e in info["errors"])
        for nid, info in node_errors.items())
    return ValidationResult(False, _error("prompt_outputs_failed_validation",
                                          "Prompt outputs failed validation", details), [], node_errors)


class _Validator:
    def __init__(self, prompt, registry):
        self.prompt = prompt
        self.registry = registry
        self.valid: Dict[str, bool] = {}
        self.errors: Dict[str, list] = {}
        self.dependents: Dict[str, set] = {}
        self._visiting: List[str] = []

    def validate(self, node_id: str, output_id: Optional[str] = None) -> bool:
        output_id = output_id or node_id
        self._mark_dependent(node_id, output_id)
        if node_id in self.valid:
            return self.valid[node_id]
        if node_id in self._visiting:
            cycle = self._visiting[self._visiting.index(node_id):]
            for member in cycle:
                self.errors.setdefault(member, []).append(_error(
                    "dependency_cycle", "Dependency cycle detected",
                    " -> ".join(cycle + [node_id])))
                self.valid[member] = False
            return False
        self._visiting.append(node_id)
        try:
            ok = self._validate_node(node_id, output_id)
        finally:
            self._visiting.pop()
        if node_id in self.valid and not self.valid[node_id]:
            ok = False  # marked invalid as part of a cycle while we were inside it
        self.valid[node_id] = ok
        return ok

    def _mark_dependent(self, node_id, output_id):
        self.dependents.setdefault(node_id, set()).add(output_id)

    def _validate_node(self, node_id, output_id) -> bool:
        node = self.prompt[node_id]
        node_class = self.registry.get(node["class_type"])
        inputs = node.setdefault("inputs", {})
        errors = self.errors.setdefault(node_id, [])
        specs = declared_inputs(node_class)
        required = [name for name, (_k, _o, section) in specs.items() if section == "required"]
        declared = specs
        vfunc, vparams, v_all = _validate_inputs_params(node_class)
        upstream_ok = True
        received_types = {}

        for name, value in list(inputs.items()):
            if name not in declared and not is_link(value):
                continue
            if is_link(value):
                src = value[0]
                if src not in self.prompt:
                    errors.append(_error("bad_linked_input", "Bad linked input, linked node does not exist",
                                         f"{name}: node '{src}'", input_name=name, linked_node=value))
                    continue
                src_class = self.registry.get(self.prompt[src]["class_type"])
                returns = getattr(src_class, "RETURN_TYPES", ())
                if not 0 <= value[1] < len(returns):
                    errors.append(_error("bad_linked_input", "Bad linked input, output index out of range",
                                         f"{name}: node '{src}' has {len(returns)} outputs, asked for {value[1]}",
                                         input_name=name, linked_node=value))
                    continue
                received = returns[value[1]]
                received_types[name] = received
                expected, expected_opts, _ = specs.get(name, (None, {}, None))
                if expected is not None and "input_types" not in vparams and not types_match(received, expected):
                    # input_config is the declared spec, options included, as ComfyUI reports it
                    config = [_type_text(expected), expected_opts] if expected_opts else [_type_text(expected)]
                    errors.append(_error(
                        "return_type_mismatch", "Return type mismatch between linked nodes",
                        f"{name}, received_type({_type_text(received)}) mismatch input_type({_type_text(expected)})",
                        input_name=name, input_config=config, received_type=_type_text(received),
                        linked_node=value))
                    continue
                if not self.validate(src, output_id):
                    upstream_ok = False
            elif isinstance(value, list):  # literal lists must be wrapped as {"__value__": [...]}
                errors.append(_error("bad_linked_input",
                                     "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                     f"{name}: {value!r}", input_name=name))
            else:
                self._check_constant(node_class, name, inputs, errors, vparams, v_all)

        for name in required:
            if name not in inputs:
                errors.append(_error("required_input_missing", "Required input is missing", name,
                                     input_name=name))

        if vfunc is not None and not errors:
            errors.extend(self._custom_validation(node_class, vfunc, vparams, v_all, inputs, received_types))
        return upstream_ok and not errors

    def _check_constant(self, node_class, name, inputs, errors, vparams, v_all):
        kind, opts, _section = input_spec(node_class, name)
        value = unwrap(inputs[name])
        caster = None if not isinstance(kind, str) else \
            {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": _to_bool}.get(kind)
        if caster is not None:
            try:
                if kind in ("INT", "FLOAT") and isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"{value} is not a finite number")  # NaN/Infinity are not JSON either
                if kind == "INT" and isinstance(value, float) and not value.is_integer():
                    raise ValueError(f"{value} is not a whole number")
                value = caster(value)
                if kind == "INT" and not INT_LIMIT[0] <= value <= INT_LIMIT[1]:
                    raise ValueError(f"{_short(value)} is outside the 64-bit range ComfyUI accepts")
                if kind == "FLOAT" and not math.isfinite(value):
                    raise ValueError(f"{_short(value)} is not a finite number")
            except (TypeError, ValueError, OverflowError) as exc:
                value = _short(value)
                errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {kind} value",
                                     f"{name}, {value}, {exc}", input_name=name, input_config=[kind, opts],
                                     received_value=value, exception_message=str(exc)))
                return
            inputs[name] = value
        if name in vparams or v_all:
            return  # the node validates this input itself
        if kind in ("INT", "FLOAT"):
            if "min" in opts and value < opts["min"]:
                errors.append(_error("value_smaller_than_min", f"Value {value} smaller than min of {opts['min']}",
                                     name, input_name=name, input_config=[kind, opts], received_value=value))
            if "max" in opts and value > opts["max"]:
                errors.append(_error("value_bigger_than_max", f"Value {value} bigger than max of {opts['max']}",
                                     name, input_name=name, input_config=[kind, opts], received_value=value))
        options = kind if isinstance(kind, (list, tuple)) else (opts.get("options") if kind == "COMBO" else None)
        if options is not None and value not in options:
            shown = list(options) if len(options) <= 20 else list(options)[:20] + ["…"]
            errors.append(_error("value_not_in_list", "Value not in list", f"{name}: '{value}' not in {shown}",
                                 input_name=name, input_config=[shown, opts], received_value=value))

    def _custom_validation(self, node_class, vfunc, vparams, v_all, inputs, received_types):
        kwargs = {}
        for name, value in inputs.items():
            if v_all or name in vparams:
                kwargs[name] = None if is_link(value) else unwrap(value)
        if "input_types" in vparams:
            kwargs["input_types"] = received_types
        try:
            result = vfunc(**kwargs)
        except Exception as exc:  # a crashing validator is a validation error, not a server error
            return [_error("exception_during_validation", "Exception when validating node", str(exc),
                           exception_type=type(exc).__name__)]
        if result is True:
            return []
        return [_error("custom_validation_failed", "Custom validation failed for node",
                       f"{result}", input_name=_guess_input(result, inputs))]


INT_LIMIT = (-(2 ** 63), 2 ** 64 - 1)  # ComfyUI's widest INT widget (seeds go up to 0xffffffffffffffff)


def _short(value):
    """A received value small enough to echo back (a 400-digit integer, a 19 MB string)."""
    text = value if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 30:
        return f"<integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    if text is not None and len(text) > 200:
        return text[:200] + f"… ({len(text)} characters)"
    return value


def _guess_input(message, inputs):
    text = str(message)
    for name in inputs:
        if f"'{name}'" in text or text.startswith(name):
            return name
    return None


def _to_bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError(f"{value!r} is not a boolean")


def _type_text(kind):
    return "COMBO" if isinstance(kind, (list, tuple)) else str(kind)
