"""fp16-safe VAE decode: a float16 decode that yields NaN/inf is redone in float32, not returned black.

The tiny models run in float16 on the CPU here. A float16 overflow cannot be
provoked on demand with random weights, so the VAE's `decode` is wrapped to
return NaN for chosen images while the VAE is float16 (the real failure's
signature); in float32 it decodes normally.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch

from brushwork.facade import Brushwork

FAST = {"steps": 2, "width": 64, "height": 64, "sampler": "Euler a", "cfg": 5.0, "style": "general"}


def px(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def half_api(tiny_models, tmp_path_factory) -> Brushwork:
    """A Brushwork whose pipelines are float16 (on the CPU), as on a CUDA GPU."""
    from brushwork.config import ModelSource, Settings

    root = tmp_path_factory.mktemp("half")
    settings = Settings.load(
        home=tiny_models.home, models_dir=tiny_models.models_dir, styles_dir=root / "styles",
        output_dir=root / "out", device="cpu", dtype="float16",
        models={"tiny-single": ModelSource(source=str(tiny_models.sd15_single), family="sd15",
                                           config=str(tiny_models.sd15_folder))},
    )
    return Brushwork(settings)


def _vae(api: Brushwork, model: str) -> Any:
    return api.engine.pipeline(api.plan("x", model=model, **FAST)).vae


@contextmanager
def nan_in_float16(vae: Any, images: tuple[int, ...]) -> Iterator[list[torch.dtype]]:
    """While the VAE is float16, its decode returns NaN for `images`; records the dtype of every decode."""
    original = vae.decode
    seen: list[torch.dtype] = []

    def decode(z: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(vae.dtype)
        out = original(z, *args, **kwargs)
        if vae.dtype != torch.float16:
            return out
        sample = out[0].clone()
        for index in images:
            if index < sample.shape[0]:
                sample[index] = float("nan")
        return (sample,)

    vae.decode = decode
    try:
        yield seen
    finally:
        del vae.decode  # the class's own method again


@contextmanager
def diffusers_decode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make every pass decode the way diffusers itself does (brushwork's decode switched off)."""
    import brushwork.engine.decode as decode_module

    with monkeypatch.context() as patch:
        patch.setattr(decode_module, "decodes_itself", lambda *args: False)
        yield


def test_the_pipelines_are_float16(half_api):
    plan = half_api.plan("x", model="tiny-sd15", **FAST)
    pipe = half_api.engine.pipeline(plan)
    assert pipe.vae.dtype == torch.float16 and pipe.unet.dtype == torch.float16


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # diffusers' own NaN → uint8
def test_nan_decode_is_redone_in_float32_for_that_image_only(half_api, monkeypatch):
    vae = _vae(half_api, "tiny-sd15")
    before = half_api.generate("a fox", model="tiny-sd15", seed=3, batch_size=2, **FAST)
    assert before.notes == []
    with nan_in_float16(vae, images=(0,)) as seen:
        result = half_api.generate("a fox", model="tiny-sd15", seed=3, batch_size=2, **FAST)
    assert seen == [torch.float16, torch.float32]  # one batch decode, then seed 3 alone in float32
    assert vae.dtype == torch.float16  # put back after the retry
    assert result.notes == ["The float16 VAE decode gave NaN/inf values (a black image) for seed 3; "
                            "decoded again in float32."]
    fixed, plain = px(result.images[0]), px(before.images[0])
    assert fixed.mean() > 20 and fixed.std() > 5  # not black
    assert np.abs(fixed - plain).max() <= 3  # the same picture, decoded at another precision
    assert np.array_equal(px(result.images[1]), px(before.images[1]))  # seed 4 kept its float16 decode
    # without the fallback, diffusers returns that image black
    with nan_in_float16(vae, images=(0,)), diffusers_decode(monkeypatch):
        black = half_api.generate("a fox", model="tiny-sd15", seed=3, batch_size=2, **FAST)
    assert px(black.images[0]).max() == 0 and black.notes == []


@pytest.mark.parametrize(("fields", "stage"), [
    ({"hr_scale": 2.0, "hr_steps": 2, "hr_denoise": 0.6}, " in the hires pass"),  # the img2img pipeline
    ({"init_image": "picture", "mask_image": "mask", "strength": 1.0}, ""),
], ids=["hires-latent", "inpaint"])
def test_every_decoding_mode_falls_back(half_api, fields, stage):
    from brushwork.testing.images import picture, square_mask

    images = {"picture": picture(), "mask": square_mask()}
    fields = {key: images.get(value, value) if isinstance(value, str) else value for key, value in fields.items()}
    vae = _vae(half_api, "tiny-sd15")
    with nan_in_float16(vae, images=(0,)):
        result = half_api.generate("a fox", model="tiny-sd15", seed=11, **{**FAST, **fields})
    assert result.notes == [f"The float16 VAE decode gave NaN/inf values (a black image) for seed 11{stage}; "
                            "decoded again in float32."]
    assert px(result.images[0]).mean() > 20 and vae.dtype == torch.float16


def test_nan_latents_from_the_unet_are_reported_not_retried(half_api):
    from brushwork.engine.decode import decode

    pipe = half_api.engine.pipeline(half_api.plan("x", model="tiny-sd15", **FAST))
    latents = torch.zeros(2, 4, 8, 8, dtype=torch.float16)
    latents[1] = float("nan")
    notes: list[str] = []
    with torch.inference_mode():
        images = decode(pipe, latents, sdxl=False, output_type="np", seeds=(5, 6), notes=notes)
    assert notes == ["The float16 UNet produced NaN/inf latents for seed 6, so the image is black; "
                     "run with dtype float32 (BRUSHWORK_DTYPE=float32) for this prompt and seed."]
    assert np.isfinite(images[0]).all() and pipe.vae.dtype == torch.float16


def test_float16_decode_gives_the_pixels_diffusers_gives(half_api, monkeypatch):
    ours = half_api.generate("a castle", model="tiny-sd15", seed=21, batch_size=2, **FAST)
    with diffusers_decode(monkeypatch):
        theirs = half_api.generate("a castle", model="tiny-sd15", seed=21, batch_size=2, **FAST)
    for mine, plain in zip(ours.images, theirs.images, strict=True):
        assert np.array_equal(px(mine), px(plain))


def test_sdxl_force_upcast_decodes_in_float32_and_fp16_safe_vaes_in_float16(half_api, monkeypatch):
    vae = _vae(half_api, "tiny-sdxl")
    assert vae.config.force_upcast  # like the stock SDXL VAE: diffusers always decodes it in float32
    with nan_in_float16(vae, images=(0,)) as seen:
        result = half_api.generate("a castle", model="tiny-sdxl", seed=2, **FAST)
    assert seen == [torch.float32] and result.notes == []  # never tried in float16, so nothing to fall back from
    with diffusers_decode(monkeypatch):
        upcast = half_api.generate("a castle", model="tiny-sdxl", seed=2, **FAST)
    assert np.array_equal(px(result.images[0]), px(upcast.images[0])) and vae.dtype == torch.float16
    vae.register_to_config(force_upcast=False)  # an fp16-safe VAE (sdxl-vae-fp16-fix) says so
    try:
        plain = half_api.generate("a castle", model="tiny-sdxl", seed=2, **FAST)
        with diffusers_decode(monkeypatch):
            theirs = half_api.generate("a castle", model="tiny-sdxl", seed=2, **FAST)
        assert np.array_equal(px(plain.images[0]), px(theirs.images[0]))  # float16 decode, as diffusers
        with nan_in_float16(vae, images=(0,)) as seen:
            fixed = half_api.generate("a castle", model="tiny-sdxl", seed=2, **FAST)
    finally:
        vae.register_to_config(force_upcast=True)
    assert seen == [torch.float16, torch.float32] and len(fixed.notes) == 1
    assert np.abs(px(fixed.images[0]) - px(plain.images[0])).max() <= 3
    assert vae.dtype == torch.float16


def test_float32_runs_are_left_to_diffusers_bit_for_bit(shared_api, tiny_models):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    from brushwork.engine.decode import decodes_itself

    result = shared_api.generate("a lighthouse", model="tiny-sd15", seed=9, batch_size=2, **FAST)
    plan = result.plan
    assert not decodes_itself(shared_api.engine.pipeline(plan), "pil", {})
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_models.sd15_folder), local_files_only=True)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(plan.prompt, negative_prompt=plan.negative_prompt, num_inference_steps=plan.steps,
                  guidance_scale=plan.cfg, width=plan.width, height=plan.height, num_images_per_prompt=2,
                  generator=[torch.Generator("cpu").manual_seed(seed) for seed in plan.seeds]).images
    assert pipe.vae.dtype == torch.float32 and result.notes == []
    for mine, plain in zip(result.images, theirs, strict=True):
        assert np.array_equal(px(mine), px(plain))
