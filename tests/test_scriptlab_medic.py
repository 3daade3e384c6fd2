"""apiMedic: failures classified by rules, fixed by a bounded ladder, the rest dead-lettered with the story."""
import pytest
import torch

from vibeboard.llm.fake import ScriptedProvider
from vibeboard.models import tiny
from vibeboard.models.blockswap import BlockSwap
from vibeboard.scriptlab.medic import DeadLetters, Medic, classify

WAN_SCHEMA = {
    "loader.transformer": {"type": "COMBO", "choices": ["auto", "resident", "block_swap", "sequential"]},
    "sampler.steps": {"type": "INT", "min": 1, "max": 100},
    "sampler.seed": {"type": "INT", "min": 0, "max": 2**32},
    "encode.prompt": {"type": "STRING"},
    "latent.width": {"type": "INT", "min": 16, "max": 2048},
    "latent.height": {"type": "INT", "min": 16, "max": 2048},
    "latent.length": {"type": "INT", "min": 1, "max": 241},
    "save.codec": {"type": "COMBO", "choices": ["h264", "h265", "prores"]},
}
PARAMS = {"loader.transformer": "resident", "sampler.steps": 30, "sampler.seed": 7, "encode.prompt": "a lighthouse",
          "latent.width": 1280, "latent.height": 720, "latent.length": 81, "save.codec": "h264"}

FIXTURES = [
    ("Traceback (most recent call last):\n  File \"wan/sampler.py\", line 212, in sample\n"
     "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.91 GiB. GPU 0 has a total capacity of "
     "79.19 GiB of which 3.02 GiB is free. (1280x720, 81 frames)", "oom"),
    ("VBFlashPortraitLoader: input 'model': model not found: expected "
     "/workspace/models/FlashPortrait/pd_fpg.pth", "missing_weights"),
    ({"node_errors": {"9": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                        "details": "codec: 'hevc' not in ['h264', 'h265', 'prores']"}],
                            "class_type": "VBSaveVideo"}}}, "bad_input"),
    ("RuntimeError: decoded frames contain NaN values (non-finite latents at step 12)", "nan"),
    ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d] moov atom not found\nav.error.InvalidDataError: [Errno 1094995529] "
     "Invalid data found when processing input", "bad_media"),
    ("worker exited: signal 9 (SIGKILL) — exit code 137", "worker_crash"),
    ({"error": "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0) (caption model reply)"},
     "bad_json"),
    ("requests.exceptions.ConnectionError: Connection reset by peer", "network"),
    ("ValueError: the flux capacitor is misaligned", "unknown"),
]


@pytest.mark.parametrize("error,kind", FIXTURES)
def test_stderr_fixtures_are_classified(error, kind):
    assert classify(error).kind == kind


def test_missing_weights_give_the_pull_command_and_no_retry():
    d = classify("model not found: expected /m/diffusion_models/wan2.1_t2v_1.3B_bf16.safetensors")
    assert d.kind == "missing_weights" and not d.retryable
    assert d.fix_hint == "vibeboard models pull wan2.1-t2v-1.3b"
    calls = []
    out = Medic(WAN_SCHEMA).run("j0", "shot_studio", PARAMS, lambda p: calls.append(p) or (_ for _ in ()).throw(
        FileNotFoundError("model not found: expected /m/diffusion_models/wan2.1_t2v_1.3B_bf16.safetensors")))
    assert out.status == "dead_letter" and len(calls) == 1 and "models pull wan2.1-t2v-1.3b" in out.story


def test_an_injected_oom_is_fixed_by_block_swap_on_a_tiny_model():
    model = tiny.build_transformer("t2v", 3, num_layers=8)  # eight blocks: streaming two at a time fits
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    cap = full - 1  # the "GPU" is one byte too small for the resident model
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(1, 16, 2, 4, 4, generator=g), torch.randn(1, 8, 32, generator=g)
    with torch.no_grad():
        reference = model(x, torch.tensor([500.0]), emb).sample
    seen = []

    def execute(params):
        seen.append(params["loader.transformer"])
        swap = None
        if params["loader.transformer"] == "block_swap":
            swap = BlockSwap(model, "cpu", resident=0)
            used = swap.device_bytes()
        else:
            used = full
        try:
            if used > cap:
                raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {used / 2**20:.2f} MiB "
                                             f"(budget {cap / 2**20:.2f} MiB)")
            with torch.no_grad():
                return model(x, torch.tensor([500.0]), emb).sample
        finally:
            if swap is not None:
                swap.detach()

    out = Medic(WAN_SCHEMA).run("j1", "shot_studio", PARAMS, execute)
    assert out.status == "succeeded" and seen == ["resident", "block_swap"]
    assert torch.equal(out.result, reference)   # block swap changes memory, not the picture
    assert out.attempts[0].diagnosis["kind"] == "oom" and "block_swap" in out.attempts[0].remedy
    assert out.attempts[1].params["sampler.seed"] == 7 and out.attempts[1].params["encode.prompt"] == "a lighthouse"


def test_the_oom_ladder_goes_on_to_fewer_frames_then_dead_letters(tmp_path):
    dead = DeadLetters(str(tmp_path / "dead.sqlite"))
    tried = []

    def always_oom(params):
        tried.append(params)
        raise RuntimeError("CUDA error: out of memory")
    out = Medic(WAN_SCHEMA, dead_letters=dead).run("j2", "shot_studio", PARAMS, always_oom)
    assert out.status == "dead_letter" and len(tried) == 3          # two fixes, then stop: nothing loops
    assert tried[1]["loader.transformer"] == "block_swap" and tried[2]["loader.transformer"] == "sequential"
    (letter,) = dead.list()
    assert letter["job_id"] == "j2" and len(letter["attempts"]) == 3 and letter["diagnosis"].startswith("oom")


def test_out_of_range_and_combo_values_are_clamped_and_said():
    runs = []

    def strict(params):
        runs.append(params)
        if params["latent.width"] > 2048 or params["save.codec"] not in ("h264", "h265", "prores"):
            raise ValueError("Value 4096 bigger than max of 2048: width; codec value_not_in_list")
        return "ok"
    out = Medic(WAN_SCHEMA).run("j3", "shot_studio", dict(PARAMS, **{"latent.width": 4096, "save.codec": "h256"}),
                                strict)
    assert out.status == "succeeded" and runs[1]["latent.width"] == 2048 and runs[1]["save.codec"] == "h265"
    assert "clamped 4096 to its maximum 2048" in out.attempts[0].remedy and "h265" in out.attempts[0].remedy


def test_the_llm_fixes_only_unknown_failures_and_never_seed_or_prompt(tmp_path):
    llm = ScriptedProvider([{"changes": {"sampler.seed": 8}, "reason": "new seed"},         # rejected
                            {"changes": {"sampler.steps": 20}, "reason": "fewer steps"},    # accepted → run 2
                            {"changes": {"sampler.steps": 20}, "reason": "again"},          # rejected: tried
                            {"changes": {"encode.prompt": "x"}, "reason": "simpler prompt"}])  # rejected
    dead = DeadLetters(str(tmp_path / "dead.sqlite"))
    runs = []

    def poison(params):
        runs.append(params)
        raise ValueError("the flux capacitor is misaligned")
    out = Medic(WAN_SCHEMA, llm=llm, dead_letters=dead).run("j4", "shot_studio", PARAMS, poison)
    assert out.status == "dead_letter"
    assert [r["sampler.steps"] for r in runs] == [30, 20]
    assert all(r["sampler.seed"] == 7 and r["encode.prompt"] == "a lighthouse" for r in runs)
    feedback = [m["messages"][-1]["content"] for m in (llm.sent[1], llm.sent[3])]
    assert "not editable" in feedback[0] and "already tried" in feedback[1]
    (letter,) = dead.list()
    assert len(letter["attempts"]) == 2 and "LLM fix: fewer steps" in letter["story"]
    assert "rejected" in letter["story"]


def test_an_unknown_failure_without_an_llm_is_dead_lettered_at_once(tmp_path):
    runs = []
    out = Medic(WAN_SCHEMA).run("j5", "shot_studio", PARAMS,
                                lambda p: runs.append(p) or (_ for _ in ()).throw(ValueError("weird")))
    assert out.status == "dead_letter" and len(runs) == 1 and "no LLM configured" in out.story


def test_a_real_workflow_with_an_out_of_range_value_is_clamped_and_runs(tmp_path):
    import json
    import os

    from vibeboard_runner.executor import Executor
    from vibeboard_runner.registry import NodeRegistry
    from vibeboard import NODE_CLASS_MAPPINGS
    from vibeboard.scriptlab.medic import apply_params, declared_inputs
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prompt = json.load(open(os.path.join(root, "workflows", "script_lab.api.json")))
    schema, params = declared_inputs(prompt, NODE_CLASS_MAPPINGS)
    assert schema["7.usd_per_gpu_hour"]["max"] == 100.0 and "1.script" in params and "2.screenplay" not in params
    params["7.usd_per_gpu_hour"] = 500.0
    ex = Executor(NodeRegistry.default(), output_dir=tmp_path / "o", input_dir=tmp_path / "i", temp_dir=tmp_path / "t")

    def execute(p):
        res = ex.execute(apply_params(prompt, p))
        if res.status != "success" or res.node_errors:
            raise RuntimeError(json.dumps(res.error or {"node_errors": res.node_errors}))
        return res

    out = Medic(schema).run("j6", "script_lab", params, execute)
    assert out.status == "succeeded" and out.attempts[0].diagnosis["kind"] == "bad_input"
    assert "7.usd_per_gpu_hour: clamped 500.0 to its maximum 100.0" in out.attempts[0].remedy
    board = json.load(open(tmp_path / "o" / "script_lab" / "stripboard_00001_.json"))
    assert board["usd_per_gpu_hour"] == 100.0


def test_a_user_interrupt_is_not_healed():
    from vibeboard.common.runtime import InterruptProcessing
    runs = []

    def stopped(params):
        runs.append(params)
        raise InterruptProcessing("interrupted")
    with pytest.raises(InterruptProcessing):
        Medic(WAN_SCHEMA).run("j7", "shot_studio", PARAMS, stopped)
    assert len(runs) == 1
