"""Nodes run under torch.inference_mode(), as in ComfyUI (its PromptExecutor wraps the prompt in it): a node run by
the embedded executor sees inference mode; a node that trains opts out with common.grad.training_mode and still
gets gradients; registered inference models never require grad."""
import torch

from vibeboard.common import grad
from vibeboard.models import vram
from vibeboard_runner.executor import Executor
from vibeboard_runner.registry import NodeRegistry

SEEN = {}


class ModeProbe:
    """Records the autograd modes its function (and IS_CHANGED) ran under."""
    RETURN_TYPES = ("VB_TENSOR",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"default": 1.0})}}

    @classmethod
    def IS_CHANGED(cls, value):
        SEEN["is_changed"] = torch.is_inference_mode_enabled()
        return value

    def run(self, value):
        SEEN["inference"] = torch.is_inference_mode_enabled()
        SEEN["grad"] = torch.is_grad_enabled()
        return (torch.full((3,), float(value)),)


class FitProbe:
    """An optimising node: fits a scale to its (inference-tensor) input through training_mode."""
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "run"
    CATEGORY = "test"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tensor": ("VB_TENSOR",)}}

    def run(self, tensor):
        SEEN["input_is_inference"] = tensor.is_inference()
        with grad.training_mode():
            target = grad.normal_tensor(tensor)
            scale = torch.zeros((), requires_grad=True)
            opt = torch.optim.SGD([scale], lr=0.1)
            for _ in range(20):
                opt.zero_grad()
                ((scale * torch.ones(3) - target) ** 2).mean().backward()
                opt.step()
        SEEN["back_in_inference"] = torch.is_inference_mode_enabled()
        return {"ui": {"scale": [float(scale)]}, "result": (float(scale),)}


class AsyncModeProbe(FitProbe):
    """An async node (ComfyUI runs coroutines on the executing thread, in the same mode)."""
    RETURN_TYPES = ()

    async def run(self, tensor):
        SEEN["async_inference"] = torch.is_inference_mode_enabled()
        return ()


def _run(tmp_path, value=2.0):
    registry = NodeRegistry({"ModeProbe": ModeProbe, "FitProbe": FitProbe, "AsyncModeProbe": AsyncModeProbe})
    ex = Executor(registry, output_dir=tmp_path / "out", input_dir=tmp_path / "in", temp_dir=tmp_path / "t")
    return ex.execute({"1": {"class_type": "ModeProbe", "inputs": {"value": value}},
                       "2": {"class_type": "FitProbe", "inputs": {"tensor": ["1", 0]}},
                       "3": {"class_type": "AsyncModeProbe", "inputs": {"tensor": ["1", 0]}}})


def test_a_node_run_by_the_executor_sees_inference_mode_and_the_caller_keeps_its_own(tmp_path):
    SEEN.clear()
    result = _run(tmp_path)
    assert result.status == "success", result.error
    assert SEEN["inference"] is True and SEEN["grad"] is False and SEEN["is_changed"] is True
    assert SEEN["async_inference"] is True
    assert SEEN["input_is_inference"] is True  # what the next node gets is an inference tensor, as in ComfyUI
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()  # restored after the prompt


def test_a_node_that_trains_opts_out_and_its_fit_converges(tmp_path):
    SEEN.clear()
    result = _run(tmp_path, value=2.0)
    assert result.status == "success", result.error
    assert abs(result.outputs["2"]["scale"][0] - 2.0) < 0.05
    assert SEEN["back_in_inference"] is True  # training_mode restores the node's inference mode on exit


def test_without_the_opt_out_a_node_cannot_train(tmp_path):
    # What every grad-needing node hit under ComfyUI before opting out: inference mode records no graph.
    with torch.inference_mode():
        scale = torch.zeros((), requires_grad=True)
        loss = (scale - 1.0) ** 2
    assert loss.grad_fn is None


def test_normal_tensor_and_normal_module_copy_only_inference_tensors():
    plain = torch.ones(2)
    assert grad.normal_tensor(plain) is plain and grad.normal_tensor("text") == "text"
    with torch.inference_mode():
        made = torch.ones(2)
        layer = torch.nn.Linear(2, 2)
    out = grad.normal_tensor(made)
    assert made.is_inference() and not out.is_inference() and torch.equal(out, made)
    grad.normal_module(layer)
    assert not layer.weight.is_inference() and layer.weight.requires_grad
    with grad.training_mode():
        x = torch.ones(1, 2, requires_grad=True)
        layer(x).sum().backward()  # inference weights would fail here: they cannot be saved for backward
    assert x.grad is not None and layer.weight.grad is not None


def test_training_mode_nests_inside_no_grad_and_inference_mode():
    with torch.inference_mode(), torch.no_grad():
        with grad.training_mode():
            assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
        assert not torch.is_grad_enabled() and torch.is_inference_mode_enabled()


def test_a_registered_inference_model_requires_no_grad():
    manager = vram.VramManager(budget_bytes=1 << 30, device="cpu", pin=False)
    layer = torch.nn.Linear(4, 4)
    manager.register("probe", layer)
    assert not any(p.requires_grad for p in layer.parameters())
    with manager.use("probe") as module:
        assert module(torch.ones(1, 4)).grad_fn is None  # no graph even with grad mode on


def test_the_vram_manager_moves_a_model_loaded_by_a_node_from_outside_inference_mode():
    # A node loads and runs a model under inference mode; later a /free request (server thread) or ComfyUI's unload
    # between prompts moves it with inference mode off: its weights and the manager's buffers must allow that.
    manager = vram.VramManager(budget_bytes=1 << 30, device="cpu", pin=False)
    with torch.inference_mode():
        layer = torch.nn.Linear(4, 4)
        manager.register("node-made", layer)
        with manager.use("node-made") as module:
            before = module(torch.ones(1, 4))
    assert not any(t.is_inference() for t in (*layer.parameters(), *layer.buffers()))
    manager.free()  # in place into the host copies, outside inference mode
    with manager.use("node-made") as module:
        with torch.no_grad():
            module.weight.mul_(1.0)  # a weight edit (a LoRA merge) outside inference mode
        assert torch.equal(module(torch.ones(1, 4)), before)


def test_normal_module_keeps_tied_weights_tied():
    with torch.inference_mode():
        emb = torch.nn.Embedding(5, 4)
        head = torch.nn.Linear(4, 5, bias=False)
        head.weight = emb.weight  # tied, as UMT5's shared / embed_tokens
        model = torch.nn.ModuleDict({"emb": emb, "head": head})
    grad.normal_module(model)
    assert model["head"].weight is model["emb"].weight and not model["emb"].weight.is_inference()
