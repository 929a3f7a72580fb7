"""A tiny ESRGAN (RRDBNet) upscaler for tests, benchmarks and demos.

The state dict uses Real-ESRGAN's (basicsr) key layout — `conv_first`,
`body.N.rdbK.convJ`, `conv_body`, `conv_upI`, `conv_hr`, `conv_last` — which
spandrel detects as the "ESRGAN" architecture exactly as it does a downloaded
`RealESRGAN_x4plus` / `4x-UltraSharp` file, so tests exercise the real loading
path.

The weights are *near identity* plus small random texture: the first three
feature channels carry the RGB input through every layer, so the output is
close to a nearest-neighbour enlargement of the input (channel order and tile
placement can be checked against the input), while the random part gives
every output pixel a receptive field of many input pixels (so tiling seams
would show). Weights come from a private `torch.Generator`: the same seed
gives the same file, and the caller's RNG state is untouched.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

GROWTH = 32  # RRDB growth channels; spandrel's RRDBNet hard-codes gc=32
SUPPORTED_SCALES = (1, 2, 4, 8)
TEXTURE = 0.2
BODY_GAIN = 1.4  # ≈ He gain for LeakyReLU(0.2): dense-block activations neither vanish nor explode


def _conv(gen: torch.Generator, out_c: int, in_c: int, std: float, identity: int = 0) -> dict[str, torch.Tensor]:
    weight = torch.randn(out_c, in_c, 3, 3, generator=gen) * std
    for c in range(identity):  # pass channel c straight through (centre tap)
        weight[c, :, :, :] = 0.0
        weight[c, c, 1, 1] = 1.0
    bias = torch.randn(out_c, generator=gen) * std * 0.1
    bias[:identity] = 0.0
    return {"weight": weight.contiguous(), "bias": bias}


def tiny_esrgan_state_dict(scale: int = 2, *, num_feat: int = 8, num_blocks: int = 1, seed: int = 0,
                           texture: float = TEXTURE, body_gain: float = BODY_GAIN) -> dict[str, torch.Tensor]:
    """A Real-ESRGAN-layout RRDBNet state dict (3→3 channels, `scale` ∈ 1, 2, 4, 8)."""
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {scale}")
    if num_feat < 3:
        raise ValueError("num_feat must be at least 3 (the RGB pass-through channels)")
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def put(name: str, tensors: dict[str, torch.Tensor]) -> None:
        for kind, tensor in tensors.items():
            state[f"{name}.{kind}"] = tensor

    def std(fan_in_channels: int, gain: float) -> float:
        return gain / math.sqrt(fan_in_channels * 9)

    put("conv_first", _conv(gen, num_feat, 3, std(3, 1.0), identity=3))
    for block in range(num_blocks):
        for rdb in (1, 2, 3):
            for j in range(1, 6):
                in_c = num_feat + (j - 1) * GROWTH
                out_c = GROWTH if j < 5 else num_feat
                put(f"body.{block}.rdb{rdb}.conv{j}", _conv(gen, out_c, in_c, std(in_c, body_gain)))
    # the texture enters the RGB channels only here: its amplitude is set by `texture`
    put("conv_body", _conv(gen, num_feat, num_feat, std(num_feat, texture)))
    for i in range(1, int(math.log2(scale)) + 1):
        put(f"conv_up{i}", _conv(gen, num_feat, num_feat, std(num_feat, 0.1), identity=3))
    put("conv_hr", _conv(gen, num_feat, num_feat, std(num_feat, 0.1), identity=3))
    put("conv_last", _conv(gen, 3, num_feat, std(num_feat, 0.1), identity=3))
    return state


def save_tiny_esrgan(path: Path, scale: int = 2, seed: int = 0, *, num_feat: int = 8, num_blocks: int = 1) -> Path:
    """Write a tiny ESRGAN to `path`: safetensors for `.safetensors`, else a torch.save pickle (`.pth`...)."""
    state = tiny_esrgan_state_dict(scale, num_feat=num_feat, num_blocks=num_blocks, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt"})
    else:  # the layout Real-ESRGAN ships its .pth files in
        torch.save({"params_ema": state}, path)
    return path
