"""The SDXL refiner as the engine runs it: its own UNet, the base model's VAE and second text encoder.

A refiner (`stable-diffusion-xl-refiner-1.0` and fine-tunes of it) ships a
VAE and an OpenCLIP bigG text encoder that are the base model's. Loading them
twice would cost ~1.5 GB and a second copy of the text encoder's work, so the
refiner is loaded through the same `load_pipeline` as every checkpoint, but
handed the base pipeline's `vae`, `text_encoder_2` and `tokenizer_2`
instead of loading its own. The engine keeps the result warm (like its
ControlNets); `over_base` points it at whichever base the current run uses.

`refiner_prompt_kwargs` turns the base pass's prompt arguments into the
refiner's: plain text stays text (diffusers encodes it with the refiner's one
encoder); chunked/weighted embeddings are cut down to their OpenCLIP part,
which is exactly what that shared encoder would produce for the refiner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brushwork.errors import ModelUnavailable

# The modules a refiner takes from its base instead of loading its own.
SHARED_WITH_BASE = ("vae", "text_encoder_2", "tokenizer_2")


def shared_components(base: Any) -> dict[str, Any]:
    return {name: getattr(base, name) for name in SHARED_WITH_BASE}


def load_refiner(path: Path, base: Any, *, home: Path, torch_dtype: Any, config: Path | None, device: str) -> Any:
    """Load the refiner at `path` around `base`'s VAE and second text encoder; `ModelUnavailable` if they cannot fit."""
    from brushwork.models import loading

    encoder = getattr(base, "text_encoder_2", None)
    if encoder is None:
        raise ModelUnavailable("a refiner needs an SDXL base model with a second text encoder")
    pipe = loading.load_pipeline(path, "sdxl", home=home, torch_dtype=torch_dtype, config=config,
                                 variant="refiner", components=shared_components(base))
    width = pipe.unet.config.cross_attention_dim
    if width != encoder.config.hidden_size:
        raise ModelUnavailable(f"{path.name}: the refiner's UNet attends to a {width}-wide text encoder, but the base "
                               f"model's second text encoder is {encoder.config.hidden_size} wide")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def over_base(refiner: Any, base: Any) -> Any:
    """The cached refiner with `base`'s shared modules (re-pointed in place when another base ran last).

    Re-pointing rather than copying keeps one pipeline per refiner and lets a
    previous base's modules be freed when that base leaves the cache.
    """
    if all(getattr(refiner, name) is getattr(base, name) for name in SHARED_WITH_BASE):
        return refiner
    refiner.register_modules(**shared_components(base))
    return refiner


def refiner_prompt_kwargs(refiner: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The refiner's prompt arguments from the base pass's.

    SDXL's prompt embeddings are [CLIP-L | OpenCLIP bigG] concatenated on the
    last axis and the pooled embedding is bigG's; the refiner conditions on
    bigG alone, through the same (shared) encoder, so its embeddings are the
    last `hidden_size` channels. An empty negative prompt that the base zeroed
    stays zero, as A1111 does for both models.
    """
    if "prompt_embeds" not in kwargs:
        return dict(kwargs)
    width = refiner.text_encoder_2.config.hidden_size
    out = dict(kwargs)
    for name in ("prompt_embeds", "negative_prompt_embeds"):
        if out.get(name) is not None:
            out[name] = out[name][..., -width:]
    return out
