"""MemoryPlanner: table-driven checks against the seed's 4 GB (GTX 1650) table and the usual cards."""

from __future__ import annotations

import pytest

from brushwork.errors import InvalidRequest
from brushwork.runtime.planner import (
    GiB,
    LADDER,
    PLACEMENTS,
    PROFILES,
    Device,
    Workload,
    budget_bytes,
    component_sizes,
    dtype_bytes,
    plan_memory,
    unet_activation_bytes,
    upscaler_activation_bytes,
)

GB = 10**9  # the seed's table: assert against the smaller unit so "under 3.8 GB" holds either way
GTX_1650 = Device(total_bytes=4 * GiB, free_bytes=int(3.8 * GiB))  # fp16 gives NaN there: float32
CARD_8GB = Device(8 * GiB, int(7.6 * GiB))
CARD_24GB = Device(24 * GiB, int(23 * GiB))


def work(family: str = "sd15", width: int = 512, height: int = 512, dtype: str = "float16", *,
         controlnets: int = 0, upscaler: str | None = None, batch: int = 1, mode: str = "txt2img") -> Workload:
    sizes = component_sizes(family, dtype, controlnets=controlnets, upscaler=upscaler)
    return Workload(family, width, height, sizes, batch=batch, mode=mode, dtype_bytes=dtype_bytes(dtype))


def test_component_sizes_are_the_published_parameter_counts():
    sd15 = component_sizes("sd15", "float16", controlnets=1, upscaler="esrgan_4x")
    assert sd15["unet"] == 859_520_964 * 2 and sd15["text_encoders"] == 123_060_480 * 2
    assert sd15["vae"] == 83_653_863 * 2 and sd15["controlnets"] == 361_278_976 * 2
    assert sd15["upscaler"] == 16_697_987 * 2
    sdxl = component_sizes("sdxl", "float32")
    assert sdxl["unet"] == 2_567_463_684 * 4 and sdxl["text_encoders"] == (123_060_480 + 694_659_840) * 4


# ------------------------------------------------------------ the seed's GTX 1650 table, row by row
# | Load base model (SD 1.5)  | 3.8 GB     | 1.9 GB | sequential offload
# | VAE decoding (512x768)    | OOM        | 2.6 GB | VAE slicing & tiling
# | Attention layers          | +1.2 GB    | +0.4 GB| attention slicing
# | ControlNet (OpenPose)     | OOM        | 3.8 GB | swap + layer offload
# | Real-ESRGAN upscale       | +2.1 GB    | +0.6 GB| tile 256 + half precision


def test_seed_row_base_model_does_not_fit_resident_but_sequential_offload_holds_under_1_9_gb():
    w = work(dtype="float32")
    with pytest.raises(InvalidRequest, match=r"memory: .*needs .* GiB even with resident"):
        plan_memory(w, GTX_1650, "high")
    plan = plan_memory(w, GTX_1650, "minimal")
    assert plan.placement == "sequential_offload" and plan.resident == ()
    assert plan.phases["denoise"] < 1.9 * GB


def test_seed_row_vae_decode_512x768_ooms_resident_and_fits_2_6_gb_tiled():
    w = work(width=512, height=768, dtype="float32")
    with pytest.raises(InvalidRequest):
        plan_memory(w, GTX_1650, "high")
    plan = plan_memory(w, GTX_1650, "minimal")
    assert plan.vae_tiling and plan.vae_slicing
    assert plan.phases["vae"] < 2.6 * GB


def test_seed_row_attention_naive_1_2_gb_sliced_0_4_gb_and_sdpa_less():
    w = work()  # SD 1.5 512x512 fp16 with CFG: the setting the folklore numbers come from
    naive, sliced, sdpa = (unet_activation_bytes(w, a) for a in ("naive", "sliced", "sdpa"))
    assert 1.0 * GB < naive < 1.4 * GB
    assert sliced < 0.4 * GB
    assert sdpa < sliced


def test_seed_row_controlnet_512x768_plans_under_3_8_gb_on_a_gtx_1650():
    w = work(width=512, height=768, dtype="float32", controlnets=1, upscaler="esrgan_4x")
    plan = plan_memory(w, GTX_1650)
    assert plan.placement == "group_offload"  # UNet + ControlNet in fp32 (4.9 GB) cannot be swapped in whole
    assert plan.predicted_peak_bytes < 3.8 * GB
    assert plan.predicted_peak_bytes <= budget_bytes(GTX_1650)
    assert plan.predicted_peak_bytes == max(plan.phases.values())


def test_seed_row_esrgan_tile_256_half_precision_adds_under_0_6_gb_whole_image_over_2_1_gb():
    w = work(width=512, height=768, upscaler="esrgan_4x")
    weights = w.size("upscaler")
    assert weights + upscaler_activation_bytes(w, 256) < 0.6 * GB
    assert upscaler_activation_bytes(w, None) > 2.1 * GB


@pytest.mark.parametrize(("dtype", "device", "placement", "tile"), [
    ("float16", Device(4 * GiB, int(3.8 * GiB)), "model_offload", 512),  # a 4 GB card with working fp16
    ("float32", GTX_1650, "group_offload", 384),
])
def test_4gb_sd15_512x768_controlnet_4x_upscale(dtype, device, placement, tile):
    plan = plan_memory(work(width=512, height=768, dtype=dtype, controlnets=1, upscaler="esrgan_4x"), device)
    assert (plan.placement, plan.upscaler_tile) == (placement, tile)
    assert plan.predicted_peak_bytes < 3.8 * GB


@pytest.mark.parametrize(("dtype", "profile", "placement"), [
    ("float16", "auto", "resident"),        # 2.1 GB of fp16 weights + decode fit in 3.4 GiB usable
    ("float16", "low", "model_offload"),
    ("float32", "auto", "group_offload"),   # the fp32 UNet alone (3.4 GB) does not fit: stream its layers
    ("float32", "minimal", "sequential_offload"),
])
def test_4gb_sd15_512x512(dtype, profile, placement):
    plan = plan_memory(work(dtype=dtype), GTX_1650, profile)
    assert plan.placement == placement and plan.profile == profile
    assert plan.predicted_peak_bytes <= budget_bytes(GTX_1650)


# ------------------------------------------------------------ bigger cards


def test_sdxl_1024_on_8gb_offloads_and_low_tiles_the_vae():
    w = work("sdxl", 1024, 1024)
    auto = plan_memory(w, CARD_8GB)
    assert auto.placement == "model_offload" and "unet" not in auto.resident
    low = plan_memory(w, CARD_8GB, "low")
    assert low.placement == "model_offload" and low.vae_tiling
    assert low.phases["vae"] < auto.phases["vae"]
    with pytest.raises(InvalidRequest, match="profile high"):
        plan_memory(w, CARD_8GB, "high")


@pytest.mark.parametrize("w", [work(), work("sdxl", 1024, 1024), work(width=512, height=768, controlnets=1,
                                                                       upscaler="esrgan_4x")])
def test_everything_resident_on_24gb(w):
    plan = plan_memory(w, CARD_24GB)
    assert plan.placement == "resident" and not plan.vae_tiling and not plan.attention_slicing
    assert set(plan.resident) == {role for role, size in w.sizes.items() if size}
    assert plan.attention == "sdpa"


def test_cpu_keeps_everything_in_ram_and_reports_the_peak():
    w = work(dtype="float32")
    plan = plan_memory(w, Device(16 * GiB, 8 * GiB, "cpu"), "minimal")
    assert plan.placement == "resident" and not (plan.vae_tiling or plan.attention_slicing)
    assert plan.predicted_peak_bytes > sum(w.sizes.values())
    small = plan_memory(w, Device(16 * GiB, 1 * GiB, "cpu"))
    assert "swapping" in small.reason
    with pytest.raises(InvalidRequest, match="RAM"):
        plan_memory(w, Device(2 * GiB, 1 * GiB, "cpu"))


def test_mps_slices_attention_when_memory_is_short_because_its_attention_builds_the_scores():
    w = work(width=768, height=768)
    assert not plan_memory(w, Device(32 * GiB, 30 * GiB, "mps")).attention_slicing
    tight = plan_memory(w, Device(4 * GiB, int(3.5 * GiB), "mps"))
    assert tight.attention_slicing and tight.placement != "group_offload"  # streams are CUDA only


def test_what_cannot_fit_even_at_minimal_is_refused_with_the_numbers():
    with pytest.raises(InvalidRequest) as info:
        plan_memory(work("sdxl", 2048, 2048, batch=4), Device(1 * GiB, 1 * GiB))
    assert info.value.field == "memory"
    assert "sequential offload" in info.value.message and "GiB" in info.value.message


@pytest.mark.parametrize(("field", "kwargs"), [
    ("memory", {"profile": "fast"}), ("mode", {"mode": "dream"}), ("size", {"width": 0}),
    ("family", {"family": "sd3"}),
])
def test_bad_input_names_the_field(field, kwargs):
    profile = kwargs.pop("profile", "auto")
    base = {"family": "sd15", "width": 512, "height": 512, "sizes": component_sizes("sd15"), **kwargs}
    with pytest.raises(InvalidRequest) as info:
        plan_memory(Workload(**base), CARD_8GB, profile)
    assert info.value.field == field


# ------------------------------------------------------------ properties


def _rank(placement: str) -> int:
    return PLACEMENTS.index(placement)


@pytest.mark.parametrize("w", [work(), work(dtype="float32", controlnets=1, upscaler="esrgan_4x"),
                               work("sdxl", 1024, 1024), work("flux", 1024, 1024, "bfloat16")])
def test_more_vram_never_picks_a_slower_placement(w):
    ranks = []
    for gib in (2, 3, 4, 6, 8, 10, 12, 16, 24, 32, 48, 80):
        try:
            plan = plan_memory(w, Device(gib * GiB, int(gib * GiB * 0.95)))
        except InvalidRequest:
            ranks.append(len(LADDER))
            continue
        ranks.append(_rank(plan.placement) * 2 + plan.vae_tiling)
    assert ranks == sorted(ranks, reverse=True)
    assert ranks[-1] == 0  # 80 GB: everything resident


@pytest.mark.parametrize("profile", PROFILES)
def test_a_larger_image_never_predicts_a_smaller_peak(profile):
    device = Device(80 * GiB, 78 * GiB)
    for family in ("sd15", "sdxl"):
        peaks = [plan_memory(work(family, side, side, upscaler="esrgan_4x", controlnets=1), device,
                             profile).predicted_peak_bytes for side in (256, 512, 768, 1024, 1536)]
        assert peaks == sorted(peaks) and peaks[0] < peaks[-1]
    tight = [plan_memory(work(width=side, height=side, dtype="float32"), GTX_1650, "minimal").predicted_peak_bytes
             for side in (256, 512, 768, 1024)]
    assert tight == sorted(tight)


def test_larger_batch_never_predicts_a_smaller_peak_and_slicing_bounds_the_vae():
    peaks = [plan_memory(work(batch=b), CARD_24GB, "high").predicted_peak_bytes for b in (1, 2, 4)]
    assert peaks == sorted(peaks) and peaks[0] < peaks[-1]
    one, four = (plan_memory(work(batch=b), CARD_24GB, "low").phases["vae"] for b in (1, 4))
    assert one <= four < one * 1.1  # sliced + tiled: one image's tile at a time


@pytest.mark.parametrize("device", [GTX_1650, CARD_8GB, CARD_24GB, Device(12 * GiB, 11 * GiB)])
@pytest.mark.parametrize("w", [work(width=512, height=768, controlnets=1, upscaler="esrgan_4x"),
                               work("sdxl", 1024, 1024), work(dtype="float32")])
def test_auto_is_the_fastest_profile_that_fits(device, w):
    fitting = []
    for profile in ("high", "balanced", "low", "minimal"):
        try:
            plan = plan_memory(w, device, profile)
        except InvalidRequest:
            continue
        fitting.append((_rank(plan.placement), plan.vae_tiling, plan.placement))
    auto = plan_memory(w, device)
    assert (_rank(auto.placement), auto.vae_tiling, auto.placement) == min(fitting)
