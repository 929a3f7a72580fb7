"""A1111 emphasis in the engine: weight 1 is bit-identical to no syntax, weights follow A1111's formula,
BREAK pads chunks, "plain" Plans encode exactly as before weighting existed, batching still groups."""

from __future__ import annotations

import numpy as np
import pytest

from brushwork.engine.prompts import CHUNK_TOKENS, prompt_groups, prompt_kwargs

FAST = {"steps": 3, "width": 64, "height": 64, "style": "general"}
MODELS = ["tiny-sd15", "tiny-sdxl"]


def px(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(int)


def a1111(api, prompt: str, model: str, **fields):
    return api.plan(prompt, model=model, **FAST, **fields).model_copy(update={"prompt_syntax": "a1111"})


def plain(api, prompt: str, model: str, **fields):
    return api.plan(prompt, model=model, **FAST, **fields).model_copy(update={"prompt_syntax": "plain"})


def same(a: dict, b: dict) -> bool:
    import torch

    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[k], b[k]) if hasattr(a[k], "shape") else a[k] == b[k] for k in a)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("negative", ["", "blurry"])
def test_weight_one_is_bit_identical_to_no_syntax(shared_api, model, negative):
    weighted = a1111(shared_api, "a (red:1.0) fox", model, seed=3, negative_prompt=negative)
    bare = plain(shared_api, "a red fox", model, seed=3, negative_prompt=negative)
    pipe = shared_api.engine.pipeline(bare)
    assert prompt_kwargs(pipe, weighted) == prompt_kwargs(pipe, bare)  # the same text reaches diffusers
    assert np.array_equal(px(shared_api.engine.run(weighted)), px(shared_api.engine.run(bare)))


@pytest.mark.parametrize("model", MODELS)
def test_weight_one_in_a_long_prompt_is_bit_identical(shared_api, model):
    filler = ", ".join(f"detail {i}" for i in range(50))  # over 75 tokens: chunked embeddings
    weighted = a1111(shared_api, f"{filler}, (green:1.0) \\(hat\\)", model, negative_prompt="(blurry:1.0)")
    bare = plain(shared_api, f"{filler}, green (hat)", model, negative_prompt="blurry")
    pipe = shared_api.engine.pipeline(bare)
    assert same(prompt_kwargs(pipe, weighted), prompt_kwargs(pipe, bare))


@pytest.mark.parametrize("model", MODELS)
def test_weight_changes_conditioning_and_pixels(shared_api, model):
    weighted = a1111(shared_api, "a (red:1.5) fox", model, seed=3)
    bare = a1111(shared_api, "a red fox", model, seed=3)
    pipe = shared_api.engine.pipeline(bare)
    assert "prompt_embeds" in prompt_kwargs(pipe, weighted)
    assert np.abs(px(shared_api.engine.run(weighted)) - px(shared_api.engine.run(bare))).max() > 0


@pytest.mark.parametrize("model", MODELS)
def test_emphasis_is_a1111s_multiply_then_restore_the_mean(shared_api, model):
    import torch

    bare = a1111(shared_api, "x", model, negative_prompt="blurry")
    pipe = shared_api.engine.pipeline(bare)
    unweighted = prompt_kwargs(pipe, bare.model_copy(update={"prompt": "a red fox"}), force_chunked=True)
    weighted = prompt_kwargs(pipe, bare.model_copy(update={"prompt": "a (red:1.5) [fox]"}))
    widths = [pipe.text_encoder.config.hidden_size]
    if model == "tiny-sdxl":
        widths.append(pipe.text_encoder_2.config.hidden_size)
    weights = torch.ones(1, CHUNK_TOKENS + 2, 1)
    weights[0, 2], weights[0, 3] = 1.5, 1 / 1.1  # <bos> a red fox
    start = 0
    for width in widths:  # each text encoder's part is weighted and renormalised on its own
        z = unweighted["prompt_embeds"][..., start:start + width]
        ours = weighted["prompt_embeds"][..., start:start + width]
        start += width
        rescale = ours[0, 0, 0] / z[0, 0, 0]  # the one factor that restores the mean (from <bos>, weight 1)
        assert torch.allclose(ours, z * weights * rescale, atol=1e-5, rtol=1e-4)
        assert torch.allclose(ours.mean(), z.mean(), atol=1e-6)
    assert torch.equal(weighted["negative_prompt_embeds"], unweighted["negative_prompt_embeds"])
    if model == "tiny-sdxl":  # the pooled output is CLIP's, before emphasis
        assert torch.equal(weighted["pooled_prompt_embeds"], unweighted["pooled_prompt_embeds"])


@pytest.mark.parametrize("model", MODELS)
def test_plain_plans_read_brackets_as_text_exactly_as_before(shared_api, model):
    old = plain(shared_api, "a (red:1.5) fox, \\(hat\\)", model, negative_prompt="[x]")
    pipe = shared_api.engine.pipeline(old)
    assert old.prompt.startswith("a (red:1.5) fox, \\(hat\\)") and "[x]" in old.negative_prompt
    assert prompt_kwargs(pipe, old) == {"prompt": old.prompt, "negative_prompt": old.negative_prompt}
    new = old.model_copy(update={"prompt_syntax": "a1111"})
    assert "prompt_embeds" in prompt_kwargs(pipe, new)
    escaped = a1111(shared_api, "a \\(red\\) fox", model)
    assert prompt_kwargs(pipe, escaped)["prompt"] == escaped.prompt.replace("\\", "")


@pytest.mark.parametrize("model", MODELS)
def test_break_pads_the_chunk_and_starts_another(shared_api, model):
    import torch

    base = a1111(shared_api, "x", model)
    broken = base.model_copy(update={"prompt": "a red fox BREAK a blue sky"})
    pipe = shared_api.engine.pipeline(broken)
    kwargs = prompt_kwargs(pipe, broken)
    assert kwargs["prompt_embeds"].shape[1] == 2 * (CHUNK_TOKENS + 2)
    assert kwargs["negative_prompt_embeds"].shape == kwargs["prompt_embeds"].shape  # negative padded to match
    first = prompt_kwargs(pipe, broken.model_copy(update={"prompt": "a red fox"}), force_chunked=True)
    second = prompt_kwargs(pipe, broken.model_copy(update={"prompt": "a blue sky"}), force_chunked=True)
    assert torch.equal(kwargs["prompt_embeds"][:, :CHUNK_TOKENS + 2], first["prompt_embeds"])
    assert torch.equal(kwargs["prompt_embeds"][:, CHUNK_TOKENS + 2:], second["prompt_embeds"])
    if model == "tiny-sdxl":  # pooled from the first chunk, as A1111
        assert torch.equal(kwargs["pooled_prompt_embeds"], first["pooled_prompt_embeds"])
    joined = base.model_copy(update={"prompt": "a red fox a blue sky"})
    assert np.abs(px(shared_api.engine.run(broken)) - px(shared_api.engine.run(joined))).max() > 0


def test_an_unclosed_bracket_weighs_the_rest_like_a1111(shared_api):
    import torch

    base = a1111(shared_api, "x", "tiny-sd15")
    pipe = shared_api.engine.pipeline(base)
    unclosed = prompt_kwargs(pipe, base.model_copy(update={"prompt": "a (red fox"}))
    closed = prompt_kwargs(pipe, base.model_copy(update={"prompt": "a (red fox)"}))
    assert torch.equal(unclosed["prompt_embeds"], closed["prompt_embeds"])


def test_weighted_plans_batch_together_and_keep_their_pixels(shared_api):
    fields = {"model": "tiny-sd15"}
    plans = [a1111(shared_api, "a (red:1.3) fox", seed=1, **fields),
             a1111(shared_api, "a [blue] whale BREAK sea", seed=2, **fields),
             a1111(shared_api, "a (green:1.2) tree", seed=3, **fields),
             a1111(shared_api, "a plain cat", seed=4, **fields)]
    assert len({p.batch_key() for p in plans}) == 1
    pipe = shared_api.engine.pipeline(plans[0])
    groups = sorted(members for members, _ in prompt_groups(pipe, plans))
    assert groups == [[0, 2], [1], [3]]  # one-chunk embeddings / two chunks / plain text
    results = shared_api.engine.run_batch(plans)
    for plan, result in zip(plans, results, strict=True):
        diff = np.abs(px(result) - px(shared_api.engine.run(plan)))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_emphasis_of_a_zero_mean_chunk_stays_finite():
    """A LayerNorm without bias gives zero-mean chunks (the demo model): nothing to restore, no inf/NaN."""
    import torch

    from brushwork.engine.prompts import _emphasis

    hidden = torch.randn(1, 77, 32)
    hidden = hidden - hidden.mean(dim=-1, keepdim=True)  # every token's mean is 0, as after a bias-free norm
    weights = [1.0] * 77
    weights[3] = 1.3
    out = _emphasis(hidden, weights)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 3], hidden[0, 3] * torch.tensor(1.3))
    assert torch.equal(out[0, 4], hidden[0, 4])
