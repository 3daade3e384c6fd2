"""What every benchmark in `bench/` measures with: one home for syncing, timing, peak memory, errors, tables.

The scripts import it as a plain module beside them (each puts `bench/` on `sys.path` first, so it also works when a
test loads a script by file path). Timing here is wall clock (`time.perf_counter`) around calls bracketed by
`sync(device)`, not CUDA events: the benchmarks time whole forwards, samplings and decodes (milliseconds to
seconds), where the host-side launch gap is part of what a user waits for. torch is imported lazily so the
service/executor benchmarks can use the table and timing helpers without it.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import statistics
import time

GIB = 2 ** 30


def _cuda(device=None) -> bool:
    """Whether `device` (None: the current CUDA device, if any) is a CUDA device that needs synchronising."""
    if device is not None and not str(device).startswith("cuda"):
        return False   # "cpu" / torch.device("cpu"): nothing to wait for, and no torch import needed
    import torch
    return torch.cuda.is_available()


def sync(device=None) -> None:
    """Wait for the GPU's queued work (no-op on CPU). device None: the current CUDA device when CUDA is present."""
    if _cuda(device):
        import torch
        torch.cuda.synchronize(device)


def median(values):
    """statistics.median: the mean of the two middle values for an even count."""
    return statistics.median(values)


def timed(fn, repeat: int, warmup: int = 1, device=None, stats: dict = None):
    """Median wall time of `repeat` calls of `fn()` after `warmup` calls → (median_s, output of the last call).

    Every call, warm-ups included, is timed with `time.perf_counter` between `sync(device)` before and after (CUDA
    events are not used: see the module docstring). The previous call's output is released before the next call,
    so a peak-memory reading around `timed` is one call's. With repeat == 0 the median is the last warm-up's time.
    stats (optional dict) receives "first_s" (the first call's time: warm-up cost such as cuDNN autotuning or a
    compile), "warmup_s" and "times" (every timed call, seconds)."""
    warm, times, out = [], [], None
    for i in range(warmup + repeat):
        out = None
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        (warm if i < warmup else times).append(time.perf_counter() - t0)
    if stats is not None:
        stats.update(first_s=(warm + times)[0] if warm or times else None, warmup_s=warm, times=times)
    if times:
        return median(times), out
    return (warm[-1] if warm else float("nan")), out


class StepTimer:
    """A sampler's per-step callback that synchronises and stamps the clock at each step's end.

    `start()` stamps the start (so the first interval is the first step, weights upload and warm-up included);
    without it, `intervals()` are the steps after the first callback only. Works as `wan.sampler.sample`'s
    `callback(i, total, latents)`; `diffusers_callback` is the form `callback_on_step_end` wants."""

    def __init__(self, device=None):
        self.device, self.stamps = device, []

    def start(self) -> "StepTimer":
        self.stamps = [time.perf_counter()]
        return self

    def __call__(self, *args, **kwargs) -> None:
        sync(self.device)
        self.stamps.append(time.perf_counter())

    def diffusers_callback(self, pipe, step, timestep, callback_kwargs: dict) -> dict:
        self()
        return callback_kwargs

    def intervals(self) -> list:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def peak_reset(device=None) -> None:
    """Start a new peak-memory window on a CUDA device (no-op elsewhere)."""
    if _cuda(device):
        import torch
        torch.cuda.reset_peak_memory_stats(device)


def _peak_bytes(device=None):
    if not _cuda(device):
        return None
    import torch
    return torch.cuda.max_memory_allocated(device)


def peak_gb(device=None) -> float:
    """Peak allocated CUDA memory since the last `peak_reset`, in GB (1e9 bytes); NaN off CUDA."""
    peak = _peak_bytes(device)
    return float("nan") if peak is None else peak / 1e9


def peak_gib(device=None) -> float:
    """Peak allocated CUDA memory since the last `peak_reset`, in GiB (2**30 bytes); NaN off CUDA."""
    peak = _peak_bytes(device)
    return float("nan") if peak is None else peak / GIB


def rel_err(a, b) -> float:
    """Relative L2 error ‖a − b‖ / ‖b‖ in float32 (b: the reference; its norm floored at 1e-12)."""
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def max_abs_err(a, b) -> float:
    """max |a − b| in float32."""
    return float((a.float() - b.float()).abs().max())


def max_abs_and_rel_err(out, ref) -> tuple:
    """(max |out − ref|, ‖out − ref‖ / ‖ref‖): the two error columns the benchmarks print against a reference."""
    return max_abs_err(out, ref), rel_err(out, ref)


@contextlib.contextmanager
def default_dtype(dtype):
    """Build modules directly in `dtype` (with `torch.device(...)`: on the device too): a 14B model constructed
    in fp32 on the host would need 56 GB, and CPU init of a full-size model takes minutes."""
    import torch
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def md_row(cells) -> str:
    """One markdown table row: `| a | b |` (each cell through str())."""
    return "|" + "|".join(f" {c} " for c in cells) + "|"


def md_table(header, rows) -> str:
    """A markdown table: the header row, the `|---|` rule, then one line per row (rows may be empty: print the
    head first and stream rows with `md_row` as they are measured)."""
    return "\n".join([md_row(header), "|" + "---|" * len(header)] + [md_row(r) for r in rows])


def card_line(device=None) -> str:
    """Card and date for the record: GPU name (or CPU threads), torch / CUDA / Triton versions, UTC time."""
    import importlib.metadata

    import torch
    if _cuda(device):
        card = torch.cuda.get_device_name(device)
    else:
        card = f"cpu ({torch.get_num_threads()} threads)"
    try:   # the installed version without importing Triton (its import must not precede TRITON_INTERPRET)
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = "not installed"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{card}, torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, triton {triton}, {now}"


def write_json(path, data, **kwargs) -> None:
    """`--json PATH`: write the numbers there (nothing when path is empty/None)."""
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=1, **kwargs)


class SinkNode:
    """A trivial output node (shows its INT input) that ends the executor/service benchmarks' workflows."""
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "bench"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}}

    def run(self, value):
        return {"ui": {"text": [str(value)]}}
