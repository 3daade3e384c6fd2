"""Faster Wan VAE decode (diffusers `AutoencoderKLWan`, Wan 2.1 and 2.2), streamed one causal time chunk at a time.

diffusers decodes one latent frame per decoder call (the causal conv caches carry the two previous frames) and
concatenates the growing output after every call. Here the same decoder runs over the same chunks, with:
- `stream`: chunks are yielded as they come (the MP4 encoder takes frames while the next chunk decodes, see
  `decode_to_video`), and written into one preallocated output otherwise (no quadratic `torch.cat`);
- `fast_ops` (bf16 without fp32 round trips): nearest upsampling in the tensor's dtype (bit-identical: nearest copies
  values), RMS norm as one fp32 reduction + two bf16 multiplies instead of a full fp32 copy, divide, cast back and a
  `+ 0.0` pass, and the causal conv's spatial zero padding done inside the convolution instead of by a full `F.pad`
  copy of its input (only the time cache is concatenated);
- `channels_last`: conv weights and activations in `channels_last_3d` (cuDNN's NDHWC kernels, no layout transposes);
- `cudnn_benchmark`: cuDNN autotunes each conv shape once per process (a handful of shapes per clip size);
- `fused_norm`: every RMS norm (+ the SiLU after it) in one Triton pass (`vae_kernels.rms_norm`), written straight
  into the causal conv's input buffer behind the cached frames (no `torch.cat` copy of the activations);
- `subpixel_upsample`: the upsamplers' nearest 2x upsample + 3x3 conv run as one conv with four 2x2 kernels (one per
  output pixel parity) on the low-resolution frame, then interleaved: no 4x upsampled tensor, 4/9 of the FLOPs;
- `tiles` > 1: the frame is cut into overlapping spatial tiles, each with its own causal cache, decoded on its own
  CUDA stream, and blended over the overlap with linear ramps (as diffusers' `tiled_decode`).
Which combination is fastest is measured by `bench/vae_decode.py`; `DEFAULT_CUDA` holds the winner. Every option
keeps the output within bf16 tolerance of `vae.decode` (the bench prints the error of each).
"""
from __future__ import annotations

import dataclasses
import types
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional

import torch
import torch.nn.functional as F

CACHE_T = 2   # frames of each causal conv's input kept for the next chunk (diffusers' CACHE_T)


@dataclass(frozen=True)
class DecodeOptions:
    fast_ops: bool = False
    channels_last: bool = False
    cudnn_benchmark: bool = False
    tiles: int = 1              # spatial tiles (1 = whole frame); tiles > 1 split the longer side
    tile_overlap: int = 8       # latent pixels shared by neighbouring tiles (×8 px in the output)
    streams: bool = True        # one CUDA stream per tile
    fused_norm: bool = False    # RMS norm + SiLU in one Triton kernel, written into the conv's padded input
    subpixel_upsample: bool = False   # nearest 2x upsample + 3x3 conv as 2x2 convs on the low-res frame

    def replace(self, **changes) -> "DecodeOptions":
        return dataclasses.replace(self, **changes)


REFERENCE = DecodeOptions()
# bf16 ops + channels_last_3d: the CUDA default until the fused ops were measured (1.24 s on an H200, preset "fast")
FAST = DecodeOptions(fast_ops=True, channels_last=True)
# + the fused Triton RMS norm (+ SiLU) and the sub-pixel upsamplers (`vae_fused`): 0.93 s on an H200 for 81 frames at
# 832×480, rel. L2 3.4e-2 against the fp32-op decode vs 3.6e-2 for FAST (bench/README.md, 2026-12-01). cuDNN autotune
# stays out: 0.931 vs 0.933 s, and it costs every new process a one-off search per conv shape on its first decode.
FUSED = FAST.replace(fused_norm=True, subpixel_upsample=True)
DEFAULT_CUDA = FUSED


def default_options(device: torch.device) -> DecodeOptions:
    """What the Wan decode nodes use: DEFAULT_CUDA on CUDA, the reference ops elsewhere; VIBEBOARD_VAE_DECODE=<preset>
    (see `options_for`) overrides both."""
    import os
    name = os.environ.get("VIBEBOARD_VAE_DECODE", "").strip()
    if name:
        chosen = options_for(name)
        if chosen is None:
            raise ValueError(f"VIBEBOARD_VAE_DECODE={name!r}: choose one of {', '.join(PRESETS)}")
        return chosen
    return DEFAULT_CUDA if torch.device(device).type == "cuda" else REFERENCE


# ---- the bf16 ops (installed on the module instances while decoding, removed after) -------------------------

def _rms_norm_forward(self, x):
    dim = 1 if self.channel_first else -1
    # the reduction accumulates in fp32 reading bf16; the scale is folded into the per-pixel factor
    inv = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32).clamp_min_(1e-12)
    out = x * (self.scale / inv).to(x.dtype)
    out = out * self.gamma
    return out + self.bias if isinstance(self.bias, torch.Tensor) else out


def _upsample_forward(self, x):
    if self.mode in ("nearest", "nearest-exact"):  # copies values: the same in any dtype
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode)
    return F.interpolate(x.float(), size=self.size, scale_factor=self.scale_factor, mode=self.mode,
                         align_corners=self.align_corners).type_as(x)


def _causal_conv_forward(self, x, cache_x=None):
    t_pad = self._padding[4]
    if t_pad > 0:
        parts = [x]
        if cache_x is not None:
            parts.insert(0, cache_x.to(x.device))
            t_pad -= cache_x.shape[2]
        if t_pad > 0:
            parts[:0] = [torch.zeros_like(x[:, :, :1])] * t_pad
        if len(parts) > 1:
            x = torch.cat(parts, dim=2)
    # (w, w, h, h, 2t, 0): the spatial padding is symmetric, so the convolution pads it itself
    return F.conv3d(x, self.weight, self.bias, self.stride, (0, self._padding[2], self._padding[0]),
                    self.dilation, self.groups)


def _patch_targets(vae):
    from diffusers.models.autoencoders import autoencoder_kl_wan as W
    return ((W.WanRMS_norm, _rms_norm_forward), (W.WanUpsample, _upsample_forward),
            (W.WanCausalConv3d, _causal_conv_forward))


def forwards_by_class(vae, targets) -> list:
    """(module, bound forward) for each decoder module whose exact class has a replacement in `targets`."""
    return [(m, types.MethodType(fn, m)) for m in vae.decoder.modules() for cls, fn in targets if type(m) is cls]


@contextmanager
def patched_forwards(pairs):
    """Each (module, forward) pair's forward set on the instance (over its class's) while the block runs, removed
    after. A module that already carries one (an earlier, more specific patch) keeps it."""
    patched = []
    for m, fn in pairs:
        if "forward" not in m.__dict__:
            m.forward = fn
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


def _fast_ops(vae, on: bool):
    return patched_forwards(forwards_by_class(vae, _patch_targets(vae)) if on else ())


@contextmanager
def _channels_last_weights(vae, on: bool):
    """Decoder conv weights as channels_last(_3d) copies while decoding; the originals (views into the VRAM
    manager's flat buffer) are put back after, so nothing it accounts for changes."""
    if not on:
        yield
        return
    saved = []
    for m in vae.decoder.modules():
        if isinstance(m, (torch.nn.Conv3d, torch.nn.Conv2d)):
            fmt = torch.channels_last_3d if m.weight.ndim == 5 else torch.channels_last
            saved.append((m, m.weight.data))
            m.weight.data = m.weight.data.contiguous(memory_format=fmt)
    try:
        yield
    finally:
        for m, data in saved:
            m.weight.data = data


@contextmanager
def _cudnn_benchmark(on: bool):
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = old or on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


# ---- the decode loop -------------------------------------------------------------------------------------

def _conv_count(vae) -> int:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
    counts = getattr(vae, "_cached_conv_counts", None)
    if counts and "decoder" in counts:
        return counts["decoder"]
    return sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())


def _tile_grid(size: int, n: int, overlap: int) -> List[tuple]:
    """n windows [start, end) over `size` latent pixels, neighbours sharing `overlap` pixels."""
    if n <= 1 or size <= overlap * 2:
        return [(0, size)]
    width = -(-(size + (n - 1) * overlap) // n)
    starts = [round(i * (size - width) / (n - 1)) for i in range(n)]
    return [(s, s + width) for s in starts]


def _ramp(n: int, like: torch.Tensor) -> torch.Tensor:
    """diffusers' blend weights: the incoming tile weighs y/n at overlap row y."""
    return torch.arange(n, device=like.device, dtype=torch.float32).div_(n).to(like.dtype)


def _blend_tiles(pieces: list, windows: list, axis: int, scale: int, total: int) -> torch.Tensor:
    """Join decoded tiles along `axis` (3 = height, 4 = width), blending each overlap linearly."""
    shape = list(pieces[0].shape)
    shape[axis] = total
    out = torch.empty(shape, dtype=pieces[0].dtype, device=pieces[0].device,
                      memory_format=torch.contiguous_format)
    prev_end = 0
    for piece, (s, e) in zip(pieces, windows):
        s, e = s * scale, e * scale
        overlap = max(prev_end - s, 0)
        if overlap:
            w = _ramp(overlap, piece).view([-1 if d == axis else 1 for d in range(piece.ndim)])
            a = out.narrow(axis, s, overlap)
            a.mul_(1 - w).add_(piece.narrow(axis, 0, overlap) * w)
        out.narrow(axis, s + overlap, e - s - overlap).copy_(piece.narrow(axis, overlap, e - s - overlap))
        prev_end = e
    return out


@torch.no_grad()
def iter_decode(vae, z: torch.Tensor, options: DecodeOptions = REFERENCE) -> Iterator[torch.Tensor]:
    """Raw latents [B,C,T,h,w] (on the VAE's device and dtype) → decoded chunks [B,3,t,H,W] clamped to -1..1, in
    time order (1 frame for the first latent frame, then 4 per latent frame for Wan 2.1).

    Always without autograd (the decorator covers every resume of the generator): a VAE whose parameters require
    grad, decoded where grad mode is on, would otherwise keep each chunk's activations alive — ≈ 15 GB per latent
    frame at 832×480, an out-of-memory on an H200 after 9 chunks (seen with the Wan Decode to Video MP4 node)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    from .vae_fused import fused_norms, subpixel_upsamplers
    cuda = z.device.type == "cuda"
    fmt = torch.channels_last_3d if options.channels_last else torch.contiguous_format
    patch = vae.config.patch_size
    scale = vae.spatial_compression_ratio // (patch or 1)
    # the fused patches go first: _fast_ops leaves modules that already carry a patched forward alone
    with ExitStack() as patches:
        for ops in (fused_norms(vae, options.fused_norm), subpixel_upsamplers(vae, options.subpixel_upsample),
                    _fast_ops(vae, options.fast_ops), _cudnn_benchmark(options.cudnn_benchmark and cuda),
                    _channels_last_weights(vae, options.channels_last)):
            patches.enter_context(ops)
        x = vae.post_quant_conv(z).contiguous(memory_format=fmt)
        h, w = x.shape[3], x.shape[4]
        axis = 3 if h > w else 4
        windows = _tile_grid(x.shape[axis], options.tiles, options.tile_overlap)
        n_conv = _conv_count(vae)
        decoder = vae.decoder
        caches = [[None] * n_conv for _ in windows]
        main = torch.cuda.current_stream(z.device) if cuda else None
        streams = ([torch.cuda.Stream(z.device) for _ in windows] if cuda and len(windows) > 1 and options.streams
                   else None)
        for k in range(x.shape[2]):
            frame = x[:, :, k:k + 1]
            pieces = []
            for j, (s, e) in enumerate(windows):
                tile = frame.narrow(axis, s, e - s) if len(windows) > 1 else frame
                if streams is not None:
                    streams[j].wait_stream(main)
                    with torch.cuda.stream(streams[j]):
                        out = decoder(tile, feat_cache=caches[j], feat_idx=[0], first_chunk=(k == 0))
                    out.record_stream(main)
                else:
                    out = decoder(tile, feat_cache=caches[j], feat_idx=[0], first_chunk=(k == 0))
                pieces.append(out)
            if streams is not None:
                for s_ in streams:
                    main.wait_stream(s_)
            out = pieces[0] if len(pieces) == 1 else _blend_tiles(pieces, windows, axis, scale,
                                                                  (h if axis == 3 else w) * scale)
            if patch is not None:
                out = unpatchify(out, patch_size=patch)
            yield out.clamp_(-1.0, 1.0)


def decode(vae, z: torch.Tensor, options: DecodeOptions = REFERENCE) -> torch.Tensor:
    """The whole clip [B,3,F,H,W] in -1..1, written chunk by chunk into one buffer."""
    out, at = None, 0
    frames = 1 + (z.shape[2] - 1) * int(getattr(vae.config, "scale_factor_temporal", 4) or 4)
    for chunk in iter_decode(vae, z, options):
        if out is None:
            b, c, _, hh, ww = chunk.shape
            out = chunk.new_empty((b, c, max(frames, chunk.shape[2]), hh, ww))
        if at + chunk.shape[2] > out.shape[2]:   # a VAE with another time factor: grow
            out = torch.cat([out[:, :, :at], chunk.new_empty((*out.shape[:2], chunk.shape[2], *out.shape[3:]))], 2)
        out[:, :, at:at + chunk.shape[2]] = chunk
        at += chunk.shape[2]
    return out[:, :, :at]


def chunk_to_uint8(chunk: torch.Tensor) -> torch.Tensor:
    """[1,3,t,H,W] in -1..1 → uint8 [t,H,W,3] (round half up, as the MP4 writer's own float → uint8)."""
    return ((chunk[0].float() + 1.0) * 127.5 + 0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 3, 0)


PRESETS = ("reference", "fast_ops", "cudnn_benchmark", "channels_last", "fast_ops_benchmark", "fast", "fast_benchmark",
           "fused_norm", "subpixel", "fused", "fused_benchmark", "tiled_streams")


def options_for(name: str) -> Optional[DecodeOptions]:
    """Named presets (bench and the VIBEBOARD_VAE_DECODE override)."""
    return {"reference": REFERENCE, "fast_ops": DecodeOptions(fast_ops=True),
            "cudnn_benchmark": DecodeOptions(cudnn_benchmark=True),
            "channels_last": DecodeOptions(fast_ops=True, channels_last=True),
            "fast_ops_benchmark": DecodeOptions(fast_ops=True, cudnn_benchmark=True),
            "fast": FAST, "fast_benchmark": FAST.replace(cudnn_benchmark=True),
            "fused_norm": FAST.replace(fused_norm=True),
            "subpixel": FAST.replace(subpixel_upsample=True),
            "fused": FUSED, "fused_benchmark": FUSED.replace(cudnn_benchmark=True),
            "tiled_streams": FAST.replace(tiles=2)}.get(name)


# ---- decode overlapped with the MP4 encode ------------------------------------------------------------------

_DONE = object()


def decode_to_video(vae, z: torch.Tensor, path: str, fps, *, options: Optional[DecodeOptions] = None,
                    keep_frames: bool = True, queue_chunks: int = 8, on_chunk=None, **write_kwargs):
    """Decode `z` (on the VAE's device and dtype) and encode the frames to an MP4 at `path` at the same time:
    a writer thread encodes the frames of the chunks already decoded (uint8, copied to pinned host memory
    asynchronously) while this thread decodes the next chunk. Returns (write_video's summary, IMAGE
    [F,H,W,3] float 0..1 on the CPU, or None without `keep_frames`). `write_kwargs` go to `media.video.write_video`
    (crf, preset, audio, metadata). `on_chunk(frames_decoded)` runs in the calling thread after each chunk
    (progress, interrupt). An error on either side stops both; no partial file is left."""
    import queue
    import threading

    from ..media import video as video_io

    options = default_options(z.device) if options is None else options
    cuda = z.device.type == "cuda"
    q: "queue.Queue" = queue.Queue(maxsize=max(1, queue_chunks))
    result: dict = {}
    stop = threading.Event()

    def frames():
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            host, event = item
            if event is not None:
                event.synchronize()
            for i in range(host.shape[0]):
                yield host[i].numpy()

    def write():
        try:
            result["summary"] = video_io.write_video(path, frames(), fps, **write_kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the decoding thread
            result["error"] = exc
        finally:
            stop.set()

    def hand_over(item) -> None:
        while not stop.is_set():   # the writer may have stopped: never block on a queue nobody reads
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    writer = threading.Thread(target=write, name="vibeboard-mp4-writer", daemon=True)
    writer.start()
    kept, done = [], 0
    try:
        for chunk in iter_decode(vae, z, options):
            if stop.is_set():
                break
            if keep_frames:
                kept.append(chunk)
            u8 = chunk_to_uint8(chunk)
            if cuda:
                host = torch.empty(u8.shape, dtype=torch.uint8, pin_memory=True)
                host.copy_(u8, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            else:
                host, event = u8.contiguous(), None
            hand_over((host, event))
            done += chunk.shape[2]
            if on_chunk is not None:
                on_chunk(done)
    except BaseException as exc:
        hand_over(RuntimeError(f"decode failed: {exc}"))  # the writer aborts: no partial file
        writer.join()
        raise
    hand_over(_DONE)
    writer.join()
    if "error" in result:
        raise result["error"]
    images = None
    if keep_frames and kept:
        video = torch.cat(kept, dim=2)
        images = ((video.float() + 1) / 2).permute(0, 2, 3, 4, 1).reshape(
            -1, video.shape[3], video.shape[4], video.shape[1]).cpu()
    return result["summary"], images
