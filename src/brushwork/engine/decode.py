"""fp16-safe VAE decoding: a float16 decode that overflows is done again in float32, never returned black.

The SD VAEs' decoder activations can exceed float16's range (65504) for some
latents; the decode then yields NaN/inf and diffusers' postprocess turns that
into a black image. When a pass's VAE is float16, `RunContext.call` asks
diffusers for `output_type="latent"` and hands the latents to `decode`, which
decodes exactly as the diffusers pipeline would (scaling factor; SDXL's
latents_mean/std when the VAE config has them; the pipeline's image
processor), checks every image for non-finite values and decodes only those
images again in float32.

Precision policy (documented in the README):
* SD 1.5 pipelines: diffusers always decodes in the VAE's dtype. brushwork
  decodes in float16 first and falls back to float32 per image on NaN/inf.
* SDXL pipelines with `force_upcast=True` in the VAE config (the stock SDXL
  VAE): diffusers always decodes those in float32, and so does brushwork. The
  stock SDXL VAE overflows float16 on nearly every image, so trying float16
  first would add a wasted decode to almost every SDXL image. A VAE that is
  fp16-safe says so with `force_upcast=false` (e.g. madebyollin's
  sdxl-vae-fp16-fix) and gets the float16-first path with the NaN check.
* float32 / bfloat16 VAEs never come here: their pass is left exactly as
  diffusers runs it (same pixels as before).

The float32 retry upcasts the shared VAE module in place and casts it back
afterwards (as diffusers' own `force_upcast` does) rather than keeping a
float32 copy: a copy would hold another 160-335 MB of weights on the device for
the whole process, which a 4 GB GPU cannot spare, while the fp16 → fp32 → fp16
round trip is exact (the weights come back bit for bit) and takes milliseconds.
The Engine serialises runs, so no other pass sees the module while it is float32.
A fallback is not remembered: the same latents always decode the same way, so
a Plan replays to the same pixels whatever ran before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# Pipelines whose VAE step brushwork can reproduce: SD 1.5 / SDXL ones with a plain AutoencoderKL. Anything
# else (another family's latents, an asymmetric inpaint VAE, a safety checker inside the pipeline,
# padding_mask_crop) keeps diffusers' own decode.
_OWN_OUTPUT_TYPES = ("pil", "np", "pt")


def safe_images(pipe: Any, run: Callable[[str], Any], *, output_type: str, sdxl: bool, seeds: Sequence[int] = (),
                stage: str = "generate", notes: list[str] | None = None,
                kwargs: dict[str, Any] | None = None) -> Any:
    """The images of one diffusers pass `run(output_type)`, with a float16 VAE's decode made NaN-safe.

    `run` calls the pipeline with the output type it is given: "latent" when
    brushwork decodes (float16 VAE), else `output_type` itself, so every other
    pass is exactly diffusers' own. `kwargs` are the pass's other pipeline arguments.
    """
    own = decodes_itself(pipe, output_type, kwargs or {})
    with vae_dtype_kept(pipe):
        output = run("latent" if own else output_type)
    if not own:
        return output.images
    return decode(pipe, output.images, sdxl=sdxl, output_type=output_type, seeds=seeds, stage=stage, notes=notes)


def decodes_itself(pipe: Any, output_type: str, kwargs: dict[str, Any]) -> bool:
    """True when this pass's images should be decoded by `decode` (a float16 AutoencoderKL, image output)."""
    import torch

    vae = getattr(pipe, "vae", None)
    return (
        output_type in _OWN_OUTPUT_TYPES
        and type(pipe).__name__.startswith("StableDiffusion")
        and type(vae).__name__ == "AutoencoderKL"
        and vae.dtype == torch.float16
        and getattr(pipe, "safety_checker", None) is None
        and kwargs.get("padding_mask_crop") is None
        and hasattr(pipe, "image_processor")
    )


@contextmanager
def vae_dtype_kept(pipe: Any) -> Iterator[None]:
    """Put the VAE back in the dtype it had on entry (diffusers' SDXL ControlNet inpaint pipeline leaves it float32)."""
    vae = getattr(pipe, "vae", None)
    dtype = getattr(vae, "dtype", None)
    try:
        yield
    finally:
        if vae is not None and dtype is not None and vae.dtype != dtype:
            _cast(vae, dtype)


def decode(pipe: Any, latents: Any, *, sdxl: bool, output_type: str, seeds: Sequence[int] = (),
           stage: str = "generate", notes: list[str] | None = None) -> Any:
    """Latents → images as the diffusers pipeline would return them, with a float32 retry for NaN/inf images.

    `sdxl` selects diffusers' SDXL decode (latents_mean/std, force_upcast);
    `notes` receives one sentence per fallback, naming the seeds it affected.
    """
    import torch

    vae = pipe.vae
    upcast = sdxl and bool(vae.config.force_upcast)  # as diffusers' SDXL pipelines: such VAEs decode in float32
    pixels = _decode_float32(vae, latents, sdxl) if upcast else _decode(vae, latents, sdxl)
    bad = _non_finite(pixels)
    broken = [i for i in bad if not bool(torch.isfinite(latents[i]).all())]  # no VAE precision can fix these
    retry = [] if upcast else [i for i in bad if i not in broken]
    fixed = None
    if retry:
        fixed = _decode_float32(vae, latents[retry], sdxl)
        still = [retry[j] for j in _non_finite(fixed)]
        fixed = _blacken(fixed, _non_finite(fixed))
        _note(notes, "The float16 VAE decode gave NaN/inf values (a black image) for {what}{stage}; "
              "decoded again in float32" + ("." if not still else ", which did not help for {bad}."),
              retry, seeds, stage, still)
    if broken:
        _note(notes, "The float16 UNet produced NaN/inf latents for {what}{stage}, so the image is black; "
              "run with dtype float32 (BRUSHWORK_DTYPE=float32) for this prompt and seed.",
              broken, seeds, stage, [])
    pixels = _blacken(pixels, bad)
    images = _postprocess(pipe, pixels, output_type)
    if fixed is not None:
        replacements = _postprocess(pipe, fixed, output_type)
        for j, index in enumerate(retry):
            images[index] = replacements[j]
    return images


def _decode(vae: Any, latents: Any, sdxl: bool) -> Any:
    """One VAE decode in the VAE's dtype, with the latent scaling of the pipeline family."""
    if not sdxl:
        return vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    import torch

    latents = latents.to(vae.dtype)
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean = torch.tensor(mean).view(1, 4, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(std).view(1, 4, 1, 1).to(latents.device, latents.dtype)
        latents = latents * std / vae.config.scaling_factor + mean
    else:
        latents = latents / vae.config.scaling_factor
    return vae.decode(latents, return_dict=False)[0]


def _decode_float32(vae: Any, latents: Any, sdxl: bool) -> Any:
    """Decode with the VAE upcast to float32 for the duration; it goes back to its own dtype after."""
    import torch

    dtype = vae.dtype
    _cast(vae, torch.float32)
    try:
        return _decode(vae, latents.to(torch.float32), sdxl)
    finally:
        _cast(vae, dtype)


def _cast(vae: Any, dtype: Any) -> None:
    from brushwork.models.loading import quiet_dtype_notice

    with quiet_dtype_notice():
        vae.to(dtype=dtype)


def _non_finite(pixels: Any) -> list[int]:
    """Indices of the images holding any NaN or inf."""
    import torch

    finite = torch.isfinite(pixels.reshape(pixels.shape[0], -1)).all(dim=1)
    return [index for index, ok in enumerate(finite.tolist()) if not ok]


def _blacken(pixels: Any, indices: list[int]) -> Any:
    """Images `indices` as black (-1) instead of NaN: the picture diffusers gives, without numpy's cast warning."""
    if not indices:
        return pixels
    import torch

    bad = torch.zeros(pixels.shape[0], dtype=torch.bool, device=pixels.device)
    bad[indices] = True
    return torch.where(bad.view(-1, *([1] * (pixels.dim() - 1))), torch.full_like(pixels, -1), pixels)


def _postprocess(pipe: Any, pixels: Any, output_type: str) -> Any:
    if getattr(pipe, "watermark", None) is not None:  # SDXL pipelines apply it before postprocessing
        pixels = pipe.watermark.apply_watermark(pixels)
    return pipe.image_processor.postprocess(pixels, output_type=output_type)


def _note(notes: list[str] | None, template: str, indices: list[int], seeds: Sequence[int], stage: str,
          still: list[int]) -> None:
    if notes is None:
        return

    def describe(chosen: list[int]) -> str:
        if len(seeds) > max(chosen, default=-1):
            listed = ", ".join(str(seeds[i]) for i in chosen)
            return f"seed{'s' if len(chosen) > 1 else ''} {listed}"
        return f"image{'s' if len(chosen) > 1 else ''} {', '.join(str(i + 1) for i in chosen)}"

    where = "" if stage == "generate" else f" in the {stage} pass"
    notes.append(template.format(what=describe(indices), stage=where, bad=describe(still)))
