"""MemoryPlanner: where weights live and which memory savers run, computed from sizes (pure Python, no torch).

`plan_memory(workload, device, profile)` predicts the peak device memory of a run for each rung of a
ladder of placements, fastest first, and returns the first rung the profile allows that fits the free
memory with a safety margin. "4 GB without OOM" is therefore a computed plan with its numbers, and a run
that cannot fit at all is refused with those numbers instead of crashing mid-way.

The ladder (fastest → slowest; each rung needs less memory than the one above it):

1. ``resident``            every component on the device for the whole run
2. ``resident`` + VAE tiling
3. ``model_offload``       one whole model on the device at a time (diffusers `enable_model_cpu_offload`)
4. ``model_offload`` + VAE tiling
5. ``group_offload``       layers streamed in with the next one prefetched on a CUDA stream
                           (diffusers `enable_group_offload(offload_type="leaf_level", use_stream=True)`)
6. ``sequential_offload``  layers streamed in one at a time, synchronously (`enable_sequential_cpu_offload`)

Profiles pick from the ladder: ``high`` 1-2 (error if neither fits), ``balanced`` 1-4, ``low`` 4-5,
``minimal`` 6, ``auto`` the first of 1-6 that fits. Small components (VAE, upscaler, text encoders)
stay resident under model/group offload when the peak still fits: that saves their transfers.

Sources. Parameter counts are the published ones (model cards / diffusers configs). The behaviour of
each saver (what it moves, what it bounds) follows the diffusers "Reduce memory usage" guide
(https://huggingface.co/docs/diffusers/optimization/memory: VAE slicing decodes a batch one image at a
time; VAE tiling decodes overlapping tiles; model offload moves whole models; sequential and group offload
move layers; attention slicing computes attention in chunks, and brings nothing once PyTorch's SDPA is
used). Activation sizes are estimated from the architectures (channel widths × feature-map sizes, see each
function) and checked against the GTX 1650 figures of the project brief (seed 000); they are estimates,
not measurements, and the safety margin absorbs allocator fragmentation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from brushwork.errors import InvalidRequest

GiB = 1 << 30
MiB = 1 << 20

Placement = Literal["resident", "model_offload", "group_offload", "sequential_offload"]
PLACEMENTS: tuple[Placement, ...] = get_args(Placement)  # fastest first
Profile = Literal["auto", "high", "balanced", "low", "minimal"]
PROFILES: tuple[Profile, ...] = get_args(Profile)
DeviceKind = Literal["cuda", "mps", "cpu"]
ROLES = ("text_encoders", "unet", "controlnets", "loras", "vae", "upscaler")
MODES = ("txt2img", "img2img", "inpaint", "outpaint")

# Published parameter counts.
_M = 1_000_000
PARAMS: dict[str, dict[str, int]] = {
    "sd15": {"unet": 859_520_964, "text_encoders": 123_060_480, "vae": 83_653_863, "controlnet": 361_278_976},
    "sdxl": {"unet": 2_567_463_684, "text_encoders": 123_060_480 + 694_659_840, "vae": 83_653_863,
             "controlnet": 1_251_300_000},
    "flux": {"unet": 11_901_408_320, "text_encoders": 4_762_310_656 + 123_060_480, "vae": 83_819_683},
}
UPSCALER_PARAMS = {"esrgan_4x": 16_697_987, "esrgan_4x_anime": 4_467_523}  # RRDBNet 23 / 6 blocks

# Largest single layer (parameters) per role: what layer-level offload must hold at once.
# sd15/sdxl UNet: the 2560→1280 3×3 up-block conv; text encoders: the token embedding (CLIP-L 49408×768,
# OpenCLIP bigG 49408×1280, T5-XXL 32128×4096); flux: a single-stream block's 3072→21504 linear.
LARGEST_LAYER: dict[str, dict[str, int]] = {
    "sd15": {"unet": 29_491_200, "text_encoders": 37_945_344, "controlnets": 14_745_600, "vae": 2_359_808},
    "sdxl": {"unet": 29_491_200, "text_encoders": 63_242_240, "controlnets": 14_745_600, "vae": 2_359_808},
    "flux": {"unet": 66_060_288, "text_encoders": 131_596_288, "controlnets": 66_060_288, "vae": 2_359_808},
}

# UNet working set, in elements per latent pixel (H/8 × W/8) per image in the (CFG-doubled) batch:
# sd15: a 320-wide transformer at full latent size holds ~16×320 (GEGLU 8C, residual, norm, q/k/v/out)
# plus ~1,730 for the skip connections kept for the up path; sdxl: its first attention level is at
# half the latent size with 640 channels (16×640/4) plus ~1,680 of skips and the 320-wide resnets;
# flux: 3072-wide tokens at H/16 (×~14 live copies in a block / 4) plus 512 text tokens (negligible).
UNET_ELEMS_PER_LATENT_PX = {"sd15": 6_850, "sdxl": 4_900, "flux": 10_752}
# Highest-resolution attention: (latent-size divisor, heads) for the N² score matrix when materialised.
ATTENTION_LEVEL = {"sd15": (1, 8), "sdxl": (2, 10), "flux": (2, 24)}
CFG = {"sd15": True, "sdxl": True, "flux": False}  # flux is guidance-distilled: one UNet pass per step
# A ControlNet keeps one residual per skip connection for the UNet: about the skip term above.
CONTROLNET_ELEMS_PER_LATENT_PX = 1_730
# VAE decoder at full resolution: the upsampled 256-channel map, its conv, and the 256→128 resnet's
# normalised/activated copies live together (~768 channels) + cuDNN workspace and the 3-channel output.
VAE_ELEMS_PER_PX = 1_200
VAE_TILE = 512  # output pixels per tile side (diffusers default for SD 1.5; set for SDXL too)
# RRDBNet: ~400 channels per input pixel in the dense body, then 64 channels × scale² at the output
# resolution, ~3 live copies (upsample, conv, activation).
UPSCALER_BODY_ELEMS, UPSCALER_HEAD_CHANNELS = 400, 64 * 3
UPSCALER_TILES = (512, 384, 256, 192, 128)

RESERVE = {"cuda": 400 * MiB, "mps": 256 * MiB, "cpu": 0}  # CUDA context + cuBLAS/cuDNN handles + allocator
SAFETY_MARGIN = 0.10  # of free memory: fragmentation of PyTorch's caching allocator


@dataclass(frozen=True)
class Workload:
    """What a run needs: family, size, batch, mode, bytes per element and component sizes in bytes."""

    family: str
    width: int
    height: int
    sizes: dict[str, int]  # bytes by role (ROLES); a missing role is 0
    batch: int = 1
    mode: str = "txt2img"
    dtype_bytes: int = 2
    upscale: int = 4  # factor of the upscaler, when sizes has one
    vae_upcast: bool | None = None  # None: family default (SDXL's VAE runs in fp32: fp16 overflows)

    def size(self, role: str) -> int:
        return int(self.sizes.get(role, 0))


@dataclass(frozen=True)
class Device:
    total_bytes: int
    free_bytes: int
    kind: DeviceKind = "cuda"


@dataclass(frozen=True)
class MemoryPlan:
    placement: Placement
    resident: tuple[str, ...]  # roles on the device for the whole run
    vae_slicing: bool
    vae_tiling: bool
    attention_slicing: bool
    attention: str  # "sdpa"
    upscaler_tile: int | None
    predicted_peak_bytes: int
    profile: str
    reason: str
    phases: dict[str, int] = field(default_factory=dict)  # predicted peak of each phase

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["resident"] = list(self.resident)
        return data


def component_sizes(family: str, dtype: str | int = "float16", controlnets: int = 0,
                    upscaler: str | None = None, loras_bytes: int = 0) -> dict[str, int]:
    """Bytes by role from the published parameter counts: the defaults until measured sizes are passed."""
    if family not in PARAMS:
        raise InvalidRequest("family", f"unknown family {family!r}; valid: {', '.join(PARAMS)}")
    width = dtype_bytes(dtype)
    params = PARAMS[family]
    if controlnets and "controlnet" not in params:
        raise InvalidRequest("controlnets", f"no default ControlNet size for {family}; pass measured sizes")
    if controlnets < 0 or loras_bytes < 0:
        raise InvalidRequest("controlnets", "counts and sizes must be ≥ 0")
    sizes = {role: params[role] * width for role in ("unet", "text_encoders", "vae")}
    sizes["controlnets"] = controlnets * params.get("controlnet", 0) * width
    sizes["loras"] = loras_bytes
    if upscaler is not None:
        if upscaler not in UPSCALER_PARAMS:
            raise InvalidRequest("upscaler", f"unknown upscaler {upscaler!r}; valid: {', '.join(UPSCALER_PARAMS)}")
        sizes["upscaler"] = UPSCALER_PARAMS[upscaler] * width
    return sizes


def dtype_bytes(dtype: str | int) -> int:
    if isinstance(dtype, int):
        return dtype
    table = {"float32": 4, "float16": 2, "bfloat16": 2}
    if dtype not in table:
        raise InvalidRequest("dtype", f"unknown dtype {dtype!r}; valid: {', '.join(table)}")
    return table[dtype]


# ---------------------------------------------------------------- activation models


def unet_activation_bytes(w: Workload, attention: str = "sdpa") -> int:
    """Denoiser working set for one step.

    batch_eff = batch × 2 with classifier-free guidance (cond + uncond in one pass).
    general = batch_eff × latent_px × UNET_ELEMS_PER_LATENT_PX × bytes (SDPA keeps attention O(tokens)).
    attention "naive" (scores materialised, e.g. MPS):  + batch_eff × heads × N² × bytes × 2 (scores, softmax)
    attention "sliced" (diffusers slice_size "auto" = heads/2): + heads/2 × N² × bytes × 2
    where N = tokens of the highest-resolution attention level.
    """
    batch_eff = w.batch * (2 if CFG.get(w.family, True) else 1)
    latent_px = (w.width // 8) * (w.height // 8)
    general = batch_eff * latent_px * UNET_ELEMS_PER_LATENT_PX[w.family] * w.dtype_bytes
    general += batch_eff * latent_px * CONTROLNET_ELEMS_PER_LATENT_PX * w.dtype_bytes * _controlnet_count(w)
    divisor, heads = ATTENTION_LEVEL[w.family]
    tokens = latent_px // (divisor * divisor)
    if attention == "naive":
        return general + batch_eff * heads * tokens * tokens * w.dtype_bytes * 2
    if attention == "sliced":
        return general + max(1, heads // 2) * tokens * tokens * w.dtype_bytes * 2
    return general


def _controlnet_count(w: Workload) -> int:
    one = PARAMS.get(w.family, {}).get("controlnet", 0) * w.dtype_bytes
    return 0 if not w.size("controlnets") else max(1, round(w.size("controlnets") / one) if one else 1)


def vae_bytes_per_element(w: Workload) -> int:
    upcast = w.family == "sdxl" if w.vae_upcast is None else w.vae_upcast
    return 4 if upcast else w.dtype_bytes


def vae_activation_bytes(w: Workload, tiling: bool, slicing: bool) -> int:
    """VAE decode (and, for img2img/inpaint, encode: same size, not at the same time).

    untiled = images × H × W × VAE_ELEMS_PER_PX × bytes; tiling bounds H × W by VAE_TILE² (plus the
    decoded tiles and the output kept for blending: 6 elements per pixel); slicing makes images = 1.
    """
    images = 1 if slicing else w.batch
    pixels = w.width * w.height
    bytes_ = vae_bytes_per_element(w)
    if not tiling:
        return images * pixels * VAE_ELEMS_PER_PX * bytes_
    return images * (min(pixels, VAE_TILE * VAE_TILE) * VAE_ELEMS_PER_PX + pixels * 6) * bytes_


def upscaler_activation_bytes(w: Workload, tile: int | None) -> int:
    """One tile through the upscaler: tile² × (body + head channels × scale²) × bytes (None = whole image)."""
    pixels = w.width * w.height if tile is None else min(tile * tile, w.width * w.height)
    return pixels * (UPSCALER_BODY_ELEMS + UPSCALER_HEAD_CHANNELS * w.upscale * w.upscale) * w.dtype_bytes


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Rung:
    placement: Placement
    tiling: bool


LADDER = (_Rung("resident", False), _Rung("resident", True), _Rung("model_offload", False),
          _Rung("model_offload", True), _Rung("group_offload", True), _Rung("sequential_offload", True))
PROFILE_RUNGS: dict[str, tuple[int, ...]] = {
    "high": (0, 1), "balanced": (0, 1, 2, 3), "low": (3, 4), "minimal": (5,), "auto": (0, 1, 2, 3, 4, 5),
}
_PHASE_ROLES = {"text": ("text_encoders",), "denoise": ("unet", "controlnets", "loras"),
                "vae": ("vae",), "upscale": ("upscaler",)}


def _attention(device: Device, rung: _Rung) -> tuple[str, bool]:
    """(activation model, attention_slicing). CUDA/CPU SDPA never builds the N² scores, so slicing would
    only slow it down; MPS materialises them, so the memory-saving rungs slice there."""
    if device.kind != "mps":
        return "sdpa", False
    sliced = rung.placement in ("group_offload", "sequential_offload") or rung.tiling
    return ("sliced" if sliced else "naive"), sliced


def _weights_on_device(w: Workload, placement: str, phase: str, resident: tuple[str, ...]) -> int:
    """Weights held during one phase: all (resident); the phase's models + the resident ones (model
    offload); the resident ones + the layer(s) being streamed: 2 largest layers with prefetch (group),
    1 (sequential)."""
    if placement == "resident":
        return sum(w.size(role) for role in ROLES)
    held = sum(w.size(role) for role in resident)
    for role in _PHASE_ROLES[phase]:
        if role in resident or not w.size(role):
            continue
        if placement == "model_offload" or role == "upscaler":  # whole models (the upscaler is small)
            held += w.size(role)
        elif role != "loras":  # streamed layer by layer; LoRA weights stream with their UNet layers
            size = w.size(role) + (w.size("loras") if role == "unet" else 0)
            layers = 2 if placement == "group_offload" else 1
            held += min(size, layers * LARGEST_LAYER[w.family].get(role, 0) * w.dtype_bytes)
    return held


def _predict(w: Workload, device: Device, rung: _Rung, resident: tuple[str, ...],
             upscaler_tile: int | None) -> dict[str, int]:
    attention, _ = _attention(device, rung)
    slicing = rung.tiling
    vae_extra = max(0, w.size("vae") * vae_bytes_per_element(w) // w.dtype_bytes - w.size("vae"))
    activations = {
        "text": 0,  # 77 (or 512) tokens through the encoders: a few MB
        "denoise": unet_activation_bytes(w, attention),
        "vae": vae_activation_bytes(w, rung.tiling, slicing) + vae_extra,
        "upscale": upscaler_activation_bytes(w, upscaler_tile) if w.size("upscaler") else 0,
    }
    reserve = RESERVE[device.kind]
    return {phase: reserve + _weights_on_device(w, rung.placement, phase, resident) + act
            for phase, act in activations.items() if phase != "upscale" or w.size("upscaler")}


def budget_bytes(device: Device) -> int:
    """What a plan may use: the free memory less the safety margin."""
    return int(device.free_bytes * (1 - SAFETY_MARGIN))


def _fit_rung(w: Workload, device: Device, rung: _Rung, budget: int
              ) -> tuple[dict[str, int], tuple[str, ...], int | None]:
    """Best phases for one rung: the largest upscaler tile, then (model/group offload) as many small
    models resident as still fit; sequential offload keeps nothing resident: it is the lowest-memory rung."""
    resident: tuple[str, ...] = tuple(r for r in ROLES if w.size(r)) if rung.placement == "resident" else ()
    tiles: tuple[int | None, ...] = UPSCALER_TILES if w.size("upscaler") else (None,)
    phases: dict[str, int] = {}
    tile = tiles[-1]
    for tile in tiles:
        phases = _predict(w, device, rung, resident, tile)
        if max(phases.values()) <= budget:
            break
    if rung.placement in ("model_offload", "group_offload") and max(phases.values()) <= budget:
        for role in sorted(("vae", "upscaler", "text_encoders"), key=w.size):
            if not w.size(role):
                continue
            trial = _predict(w, device, rung, (*resident, role), tile)
            if max(trial.values()) <= budget:
                resident, phases = (*resident, role), trial
    return phases, resident, tile


def _check(w: Workload, device: Device, profile: str) -> None:
    if profile not in PROFILES:
        raise InvalidRequest("memory", f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    if w.family not in PARAMS:
        raise InvalidRequest("family", f"unknown family {w.family!r}; valid: {', '.join(PARAMS)}")
    if w.width <= 0 or w.height <= 0 or w.batch <= 0:
        raise InvalidRequest("size", f"width, height and batch must be positive, got {w.width}x{w.height}×{w.batch}")
    if w.mode not in MODES:
        raise InvalidRequest("mode", f"unknown mode {w.mode!r}; valid: {', '.join(MODES)}")
    if device.kind not in RESERVE:
        raise InvalidRequest("device", f"unknown device kind {device.kind!r}; valid: cuda, mps, cpu")
    if device.free_bytes <= 0 or device.total_bytes <= 0:
        raise InvalidRequest("vram", "device memory must be positive")


def gb(value: int) -> str:
    return f"{value / GiB:.2f} GiB"


def plan_memory(workload: Workload, device: Device, profile: str = "auto") -> MemoryPlan:
    """The fastest placement the profile allows whose predicted peak fits `budget_bytes(device)`.

    Peak = max over phases (text encode, denoise, VAE, upscale) of
    RESERVE[kind] + weights on the device in that phase + that phase's activations.
    The mode only adds the VAE encode of img2img/inpaint, which is bounded like the decode.
    CPU: everything stays in RAM (no offload, no slicing); refused only above total RAM.
    """
    w, budget = workload, budget_bytes(device)
    _check(w, device, profile)
    if device.kind == "cpu":
        rung = LADDER[0]
        phases, resident, tile = _fit_rung(w, device, rung, budget)
        peak = max(phases.values())
        if peak > device.total_bytes:
            raise InvalidRequest("memory", f"needs {gb(peak)} of RAM, this machine has {gb(device.total_bytes)}")
        note = "" if peak <= budget else f"; above free RAM {gb(device.free_bytes)}: expect swapping"
        return MemoryPlan("resident", resident, False, False, False, "sdpa", tile, peak, profile,
                          f"CPU: weights stay in RAM, peak {gb(peak)}{note}", phases)
    rungs = [LADDER[i] for i in PROFILE_RUNGS[profile]
             if not (device.kind != "cuda" and LADDER[i].placement == "group_offload")]  # streams: CUDA only
    tried: list[tuple[_Rung, int]] = []
    for rung in rungs:
        phases, resident, tile = _fit_rung(w, device, rung, budget)
        peak = max(phases.values())
        tried.append((rung, peak))
        if peak <= budget:
            _, slicing = _attention(device, rung)
            savers = [s for s, on in (("VAE tiling", rung.tiling), ("attention slicing", slicing)) if on]
            what = rung.placement.replace("_", " ") + (" + " + ", ".join(savers) if savers else "")
            return MemoryPlan(rung.placement, resident, rung.tiling, rung.tiling, slicing, "sdpa", tile, peak,
                              profile, f"{what}: predicted peak {gb(peak)} of {gb(budget)} usable", phases)
    rung, peak = tried[-1]
    raise InvalidRequest(
        "memory", f"{w.family} {w.width}x{w.height}×{w.batch} needs {gb(peak)} even with "
        f"{rung.placement.replace('_', ' ')}{' + VAE tiling' if rung.tiling else ''} (profile {profile}); "
        f"usable: {gb(budget)} of {gb(device.free_bytes)} free"
        + ("; try --memory auto" if profile != "auto" else "; use a smaller size or batch"))
