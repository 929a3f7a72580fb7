"""One contract every runner passes: a new mode is covered by adding its row here.

For each row (a mode, or a mode with ControlNet / hires fix / post chain, on
SD 1.5 and SDXL): the Plan round-trips through JSON, progress is monotonic and
ends at the planned step count, image i of a batch equals seed+i alone, a PNG
replays to identical pixels, and cancelling stops between steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from PIL import Image

from brushwork.contract.events import CancelToken
from brushwork.contract.validation import planned_steps
from brushwork.engine.runners.base import RUNNERS
from brushwork.errors import Cancelled
from brushwork.plan import Plan
from brushwork.testing.images import picture, square_mask

BASE = {"steps": 3, "width": 64, "height": 64, "sampler": "Euler a", "cfg": 5.0}


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@dataclass(frozen=True)
class Row:
    id: str
    mode: str
    fields: Callable[[Any], dict[str, Any]]
    model: str = "tiny-sd15"


def _init(api: Any) -> dict[str, Any]:
    return {"init_image": api.add_image(picture()), "strength": 0.7}


def _inpaint(api: Any, **extra: Any) -> dict[str, Any]:
    return {**_init(api), "mask_image": api.add_image(square_mask()), **extra}


def _canny(api: Any, model: str = "tinycanny", **extra: Any) -> dict[str, Any]:
    return {"model": model, "image": api.add_image(picture()), "preprocessor": "canny", **extra}


ROWS = [
    Row("txt2img", "txt2img", lambda api: {}),
    Row("txt2img-controlnet", "txt2img", lambda api: {"controls": [_canny(api)]}),
    Row("txt2img-two-controlnets", "txt2img", lambda api: {
        "controls": [_canny(api, scale=0.8), {"model": "tinydepth", "image": api.add_image(picture()), "end": 0.5}]}),
    Row("hires-latent", "txt2img", lambda api: {"hr_scale": 2.0, "hr_steps": 2, "hr_denoise": 0.6}),
    Row("hires-upscaler-model", "txt2img", lambda api: {"hr_scale": 1.5, "hr_upscaler": "tiny2x", "hr_denoise": 0.5}),
    Row("post-chain", "txt2img", lambda api: {"upscale": [{"upscaler": "tiny2x", "scale": 2.0},
                                                         {"upscaler": "Lanczos", "scale": 1.5}],
                                              "resize_to": (150, 100)}),
    Row("img2img", "img2img", _init),
    Row("img2img-controlnet-uses-init", "img2img", lambda api: {**_init(api), "controls": [{"model": "tinycanny",
                                                                                            "preprocessor": "canny"}]}),
    Row("inpaint", "inpaint", _inpaint),
    Row("inpaint-only-masked", "inpaint", lambda api: _inpaint(api, inpaint_area="masked", inpaint_padding=8)),
    Row("inpaint-latent-noise", "inpaint", lambda api: _inpaint(api, masked_content="latent_noise")),
    Row("inpaint-controlnet", "inpaint", lambda api: {**_inpaint(api), "controls": [_canny(api)]}),
    Row("inpaint-model-9-channels", "inpaint", _inpaint, "tiny-sd15-inpaint"),
    Row("inpaint-model-controlnet", "inpaint", lambda api: {**_inpaint(api), "controls": [_canny(api)]},
        "tiny-sd15-inpaint"),
    Row("outpaint", "outpaint", lambda api: {"init_image": api.add_image(picture()), "outpaint_right": 16,
                                             "outpaint_up": 8}),
    Row("sdxl-txt2img-controlnet", "txt2img", lambda api: {"controls": [_canny(api, "tinycanny-xl")]},
        "tiny-sdxl"),
    Row("sdxl-inpaint", "inpaint", _inpaint, "tiny-sdxl"),
    Row("sdxl-img2img-hires-free", "img2img", _init, "tiny-sdxl"),
    Row("flux-txt2img", "txt2img", lambda api: {"sampler": "Euler", "cfg": 0.0}, "tinyflux"),
    Row("flux-img2img", "img2img", lambda api: {**_init(api), "sampler": "Euler", "cfg": 0.0}, "tinyflux"),
]


def test_every_mode_in_the_runner_table_has_a_row():
    assert set(RUNNERS) == {row.mode for row in ROWS}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_runner_contract(shared_api, row: Row, tmp_path):
    base = {k: v for k, v in BASE.items() if row.mode != "outpaint" or k not in ("width", "height")}
    plan = shared_api.plan("a red fox in the snow", model=row.model, seed=11, batch_size=2,
                           **{**base, **row.fields(shared_api)})  # a row's fields override the base
    assert plan.mode == row.mode
    assert Plan.from_json(plan.to_json()) == plan

    events = []
    result = shared_api.run(plan, on_progress=events.append)
    steps = [e.step for e in events]
    assert steps == sorted(steps) and steps[-1] == events[-1].total == planned_steps(plan)
    assert len(result.images) == 2

    alone = shared_api.run(plan.single(1))  # image i of a batch is seed+i alone
    assert np.abs(px(result.images[1]) - px(alone.images[0])).max() <= 1

    paths = shared_api.save(result, tmp_path)
    again = shared_api.replay(paths[1])  # the PNG's Plan and the stored inputs give the same pixels
    assert np.array_equal(px(again.images[0]), px(alone.images[0]))

    token, seen = CancelToken(), []

    def cancel_after_first(event: Any) -> None:
        seen.append(event)
        token.cancel()

    with pytest.raises(Cancelled):
        shared_api.run(plan, on_progress=cancel_after_first, cancel=token)
    assert len(seen) == 1
