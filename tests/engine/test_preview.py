"""Live previews: a fixed latent→RGB map as a small JPEG, every Nth step, per batched Plan."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.engine.preview import LATENT_RGB, latent_jpegs
from brushwork.engine.progress import StepTracker

FAST = {"steps": 4, "width": 64, "height": 64, "style": "general", "model": "tiny-sd15"}


def decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB")).astype(int)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_each_latent_channel_maps_to_its_colour(family):
    latents = torch.zeros(2, 4, 8, 8)
    latents[1, 0] = 1.0  # row 1: only channel 1 is on
    blank, first = (decode(j) for j in latent_jpegs(latents, family, [0, 1]))
    assert blank.shape == (8, 8, 3) and np.abs(blank - 128).max() <= 3  # zero latents: mid grey
    expected = [round((c + 1) / 2 * 255) for c in LATENT_RGB[family][0]]
    assert np.abs(first.mean(axis=(0, 1)) - expected).max() <= 4  # JPEG rounding only


def test_unknown_family_or_shape_gives_no_preview():
    assert latent_jpegs(torch.zeros(1, 4, 8, 8), "flux", [0]) == [None]
    assert latent_jpegs(torch.zeros(1, 16, 8, 8), "sd15", [0]) == [None]


def test_the_tracker_previews_every_nth_step_but_not_the_last():
    plain, previews = [], []
    tracker = StepTracker(5, plain.append, None, preview_every=2,
                          on_latents=lambda event, latents: previews.append((event.step, latents)))
    for index in range(5):
        tracker.timestep_done(index, 5, 1, latents=f"latents@{index}")
    assert [e.step for e in plain] == [1, 3, 5] and previews == [(2, "latents@1"), (4, "latents@3")]
    off = StepTracker(5, plain.append, None, preview_every=0, on_latents=lambda *a: previews.append(a))
    off.timestep_done(0, 5, 1, latents="x")
    assert len(previews) == 2


def test_batched_plans_get_their_own_previews_and_the_same_pixels(shared_api):
    plans = [shared_api.plan("a red fox", seed=1, **FAST), shared_api.plan("a blue whale", seed=2, **FAST)]
    events: dict[int, list] = {0: [], 1: []}
    results = shared_api.engine.run_batch(plans, on_progress=lambda i, e: events[i].append(e), preview_every=1)
    for member in (0, 1):
        assert [e.step for e in events[member]] == [1, 2, 3, 4]
        assert all(e.preview is not None for e in events[member][:3]) and events[member][3].preview is None
        assert decode(events[member][0].preview).shape == (8, 8, 3)  # latent size: 64 / 8
    assert events[0][2].preview != events[1][2].preview
    for plan, result in zip(plans, results, strict=True):  # previews never change the image
        diff = np.abs(np.asarray(result.images[0]).astype(int) - np.asarray(shared_api.engine.run(plan).images[0]))
        assert diff.max() <= 1  # batched kernels may round the last bit differently
