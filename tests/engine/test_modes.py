"""What each image mode promises, on the tiny SD 1.5 model (64x64, a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from brushwork.errors import InvalidRequest, NotFound
from brushwork.post.metadata import PLAN_KEY, parse_a1111_parameters, read_text_chunks
from brushwork.testing.images import picture, square_mask

BASE = {"steps": 3, "width": 64, "height": 64, "sampler": "Euler a", "cfg": 5.0}
TINY = {"model": "tiny-sd15", "seed": 5, **BASE}


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_strength_zero_gives_the_init_image_back(shared_api):
    init = picture()
    result = shared_api.generate("a fox", init_image=init, strength=0.0, **TINY)
    assert np.abs(px(result.images[0]) - px(init)).max() <= 1


def test_img2img_runs_only_the_strength_share_of_the_steps(shared_api):
    events = []
    fields = {**TINY, "steps": 6}
    shared_api.generate("a fox", init_image=picture(), strength=0.35, on_progress=events.append, **fields)
    assert [e.step for e in events] == [1, 2] and events[-1].total == 2  # int(6 * 0.35), as diffusers and A1111


@pytest.mark.parametrize("resize_mode", ["just_resize", "crop_and_resize", "resize_and_fill"])
def test_init_image_of_another_size_is_resized_as_asked(shared_api, resize_mode):
    result = shared_api.generate("a fox", init_image=picture((96, 64)), resize_mode=resize_mode, strength=0.0, **TINY)
    assert result.images[0].size == (64, 64)
    assert result.plan.init.resize_mode == resize_mode


def test_default_size_of_img2img_is_the_init_images(shared_api):
    plan = shared_api.plan("a fox", init_image=picture((96, 72)), model="tiny-sd15", seed=1)
    assert (plan.width, plan.height) == (96, 72)


@pytest.mark.parametrize("fields", [{}, {"inpaint_area": "masked", "inpaint_padding": 4}, {"masked_content": "fill"},
                                    {"masked_content": "latent_nothing", "mask_blur": 0}])
def test_inpaint_changes_only_the_masked_pixels(shared_api, fields):
    init, mask = picture(), square_mask()
    result = shared_api.generate("a fox", init_image=init, mask_image=mask, strength=1.0, **TINY, **fields)
    out, before = px(result.images[0]), px(init)
    keep = np.asarray(mask) == 0
    blur = result.plan.mask.mask_blur
    # the blur softens the seam by up to ~3 sigma outside the mask; everything beyond is untouched bit for bit
    far = keep.copy()
    far[16 - 3 * blur - 1:48 + 3 * blur + 1, 16 - 3 * blur - 1:48 + 3 * blur + 1] = False
    assert np.array_equal(out[far], before[far])
    inside = ~keep
    assert np.abs(out[inside] - before[inside]).mean() > 5


def test_inverted_mask_repaints_the_other_part(shared_api):
    init, mask = picture(), square_mask()
    result = shared_api.generate("a fox", init_image=init, mask_image=mask, invert_mask=True, mask_blur=0,
                                 strength=1.0, **TINY)
    inside = np.asarray(mask) == 255
    assert np.array_equal(px(result.images[0])[inside], px(init)[inside])


def test_outpaint_keeps_the_original_canvas_and_fills_the_new_area(shared_api):
    init = picture()
    fields = {k: v for k, v in TINY.items() if k not in ("width", "height")}  # the canvas sets the size
    result = shared_api.generate("a fox", init_image=init, outpaint_left=8, outpaint_right=20, outpaint_down=16, **fields)
    image = result.images[0]
    # 64+8+20 = 92 → rounded up to 96 by extending right; 64+16 = 80
    assert image.size == (96, 80) and result.plan.outpaint.sides() == (8, 24, 0, 16)
    assert np.array_equal(px(image)[0:64, 8:72], px(init))
    assert np.abs(px(image)[:, 80:].astype(float) - px(image)[:, 71:72]).mean() > 1  # not just stretched edges


def test_controlnet_scale_zero_equals_no_controlnet_and_nonzero_differs(shared_api):
    control = shared_api.add_image(picture())
    plain = shared_api.generate("a fox", **TINY)
    zero = shared_api.generate("a fox", controls=[{"model": "tinycanny", "image": control, "scale": 0.0}], **TINY)
    one = shared_api.generate("a fox", controls=[{"model": "tinycanny", "image": control, "scale": 1.0}], **TINY)
    assert np.abs(px(zero.images[0]) - px(plain.images[0])).max() <= 1
    assert np.abs(px(one.images[0]) - px(plain.images[0])).max() > 5


def test_canny_preprocessing_changes_what_the_controlnet_sees(shared_api):
    control = shared_api.add_image(picture())
    raw = shared_api.generate("a fox", controls=[{"model": "tinycanny", "image": control}], **TINY)
    edges = shared_api.generate("a fox", controls=[{"model": "tinycanny", "image": control,
                                                    "preprocessor": "canny"}], **TINY)
    assert not np.array_equal(px(raw.images[0]), px(edges.images[0]))


def test_unknown_or_mismatched_controlnet_is_a_clear_error(shared_api):
    control = shared_api.add_image(picture())
    with pytest.raises(NotFound) as info:
        shared_api.plan("a fox", controls=[{"model": "nosuch", "image": control}], **TINY)
    assert "tinycanny" in info.value.valid
    with pytest.raises(InvalidRequest, match="is for sdxl but the model is sd15"):
        shared_api.plan("a fox", controls=[{"model": "tinycanny-xl", "image": control}], **TINY)
    with pytest.raises(InvalidRequest, match="needs an image"):
        shared_api.plan("a fox", controls=[{"model": "tinycanny"}], **TINY)


def test_hires_fix_makes_the_target_size_and_records_a1111_keys(shared_api, tmp_path):
    result = shared_api.generate("a fox", hr_scale=1.5, hr_denoise=0.5, hr_steps=2, **TINY)
    assert result.images[0].size == (96, 96)
    path = shared_api.save(result, tmp_path)[0]
    fields = parse_a1111_parameters(read_text_chunks(path)["parameters"])
    assert (fields["Hires upscale"], fields["Hires steps"], fields["Hires upscaler"]) == ("1.5", "2", "Latent")
    assert fields["Denoising strength"] == "0.5" and fields["Size"] == "64x64"


def test_post_chain_upscales_then_resizes_exactly(shared_api, tmp_path):
    result = shared_api.generate("a fox", upscale=[{"upscaler": "tiny2x", "scale": 2.0}], resize_to=(100, 90), **TINY)
    assert result.images[0].size == (100, 90)
    fields = parse_a1111_parameters(read_text_chunks(shared_api.save(result, tmp_path)[0])["parameters"])
    assert (fields["Postprocess upscaler"], fields["Postprocess upscale by"]) == ("tiny2x", "2")
    with pytest.raises(NotFound) as info:
        shared_api.plan("a fox", upscale=[{"upscaler": "nosuch"}], **TINY)
    assert {"tiny2x", "Lanczos"} <= set(info.value.valid)


def test_inputs_are_stored_once_and_plans_name_them_by_hash(shared_api):
    first = shared_api.add_image(picture())
    second = shared_api.add_image(picture())
    assert first == second and shared_api.assets.path(first).is_file()
    plan = shared_api.plan("a fox", init_image=picture(), **TINY)
    assert plan.init.init_image == first
    assert len(plan.to_json()) < 2000  # no image bytes in the Plan


def test_mask_of_another_size_is_refused_before_any_work(shared_api):
    with pytest.raises(InvalidRequest) as info:
        shared_api.plan("a fox", init_image=picture(), mask_image=square_mask((32, 32)), **TINY)
    assert info.value.field == "mask_image" and "same size" in str(info.value)


@pytest.mark.parametrize(("fields", "field"), [
    ({"strength": 0.5}, "strength"), ({"mask_blur": 4}, "mask_blur"),
    ({"outpaint_left": 8}, "outpaint"), ({"hr_steps": 3}, "hr_steps"),
])
def test_options_without_their_image_are_refused_not_ignored(shared_api, fields, field):
    with pytest.raises(InvalidRequest) as info:
        shared_api.plan("a fox", **TINY, **fields)
    assert info.value.field == field


def test_hires_fix_is_txt2img_only(shared_api):
    with pytest.raises(InvalidRequest, match="txt2img only"):
        shared_api.plan("a fox", init_image=picture(), hr_scale=2.0, **TINY)


def test_replay_names_a_missing_input_image(shared_api, make_settings, tmp_path):
    from brushwork.facade import Brushwork

    result = shared_api.generate("a fox", init_image=picture(), strength=0.0, **TINY)
    path = shared_api.save(result, tmp_path)[0]
    elsewhere = Brushwork(make_settings(home=tmp_path / "other-home"))  # an empty asset store
    with pytest.raises(InvalidRequest) as info:
        elsewhere.replay(path)
    assert result.plan.init.init_image.sha256[:12] in str(info.value)


def test_a_version_1_png_from_the_first_release_still_replays(shared_api, tmp_path):
    from brushwork.contract.samplers import a1111_fields

    result = shared_api.generate("a fox", sampler="DPM++ 2M Karras", **{k: v for k, v in TINY.items() if k != "sampler"})
    plan = json.loads(result.plan.to_json())
    sampler, schedule = a1111_fields(plan["sampling"]["sampler"])
    v1 = {k: v for k, v in plan.items() if k not in ("sampling", "size")}
    v1.update(schema_version=1, sampler=sampler, schedule=schedule, steps=plan["sampling"]["steps"],
              cfg=plan["sampling"]["cfg"], clip_skip=1, width=64, height=64)
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(PLAN_KEY, json.dumps(v1))
    old = tmp_path / "v1.png"
    result.images[0].save(old, pnginfo=info)
    again = shared_api.replay(old)
    assert np.array_equal(px(again.images[0]), px(result.images[0]))


def test_safety_filter_blocks_and_records(make_settings, tmp_path):
    from brushwork.facade import Brushwork

    api = Brushwork(make_settings(safety_filter="brushwork.testing.safety:block_first"))
    result = api.generate("a fox", batch_size=2, **TINY)
    assert result.filtered == [True, False]
    assert not np.asarray(result.images[0]).any() and np.asarray(result.images[1]).any()
    fields = parse_a1111_parameters(read_text_chunks(api.save(result, tmp_path)[0])["parameters"])
    assert fields["Safety filter"] == "blocked"


def test_a_style_file_can_choose_every_mode_option(make_settings, tmp_path):
    from brushwork.facade import Brushwork

    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "big.toml").write_text(
        'name = "big"\nmodel = "tiny-sd15"\nprompt = "{prompt}, detailed"\nsteps = 3\nwidth = 64\nheight = 64\n'
        'hr_scale = 1.5\nhr_denoise = 0.4\nstrength = 0.3\nmask_blur = 2\n'
        'upscale = [{ upscaler = "Lanczos", scale = 2.0 }]\n')
    (styles / "edges.py").write_text(
        "from brushwork import Recipe, ControlUnit, style\n"
        "@style(name='edges')\n"
        "def edges(prompt, **options):\n"
        "    return Recipe(model='tiny-sd15', prompt=prompt, steps=3, width=64, height=64, inpaint_area='masked',\n"
        "                  controls=(ControlUnit(model='tinycanny', preprocessor='canny', scale=0.5),))\n")
    api = Brushwork(make_settings(styles_dir=styles))
    assert not api.styles.errors, api.styles.errors
    big = api.plan("a fox", style="big", seed=1)
    assert (big.hires.hr_scale, big.post.upscale[0].upscaler, big.mode) == (1.5, "Lanczos", "txt2img")
    inpaint = api.plan("a fox", style="big", seed=1, init_image=picture(), mask_image=square_mask())
    assert (inpaint.init.strength, inpaint.mask.mask_blur, inpaint.hires) == (0.3, 2, None)
    assert any("hires fix applies to txt2img only" in w for w in inpaint.warnings)
    edges = api.plan("a fox", style="edges", seed=1, init_image=picture(), mask_image=square_mask())
    assert edges.controls[0].image == edges.init.init_image and edges.mask.inpaint_area == "masked"
    assert api.run(edges).images[0].size == (64, 64)


def test_a_dedicated_inpainting_model_inpaints_and_refuses_other_modes(shared_api):
    init, mask = picture(), square_mask()
    fields = {**TINY, "model": "tiny-sd15-inpaint"}
    result = shared_api.generate("a fox", init_image=init, mask_image=mask, mask_blur=0, strength=1.0, **fields)
    assert result.plan.model.variant == "inpaint"
    keep = np.asarray(mask) == 0
    assert np.array_equal(px(result.images[0])[keep], px(init)[keep])
    assert type(shared_api.engine.pipeline(result.plan)).__name__ == "StableDiffusionInpaintPipeline"
    for other in ({}, {"init_image": init}):
        with pytest.raises(InvalidRequest, match="is an inpainting model") as info:
            shared_api.plan("a fox", **fields, **other)
        assert info.value.field == "model"
