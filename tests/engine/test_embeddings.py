"""Textual-inversion embeddings: vectors take the name's place, files are read once per warm pipeline,
files that cannot serve are one-line errors, and Plans without embeddings are unaffected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brushwork.engine import embeddings as embeddings_module
from brushwork.engine.prompts import CHUNK_TOKENS, prompt_kwargs
from brushwork.errors import BrushworkError, ModelUnavailable
from brushwork.models.embedding_files import (
    embedding_widths,
    family_problem,
    read_embedding_shape,
)
from brushwork.plan import AdapterRef
from brushwork.testing.embeddings import save_tiny_embedding

FAST = {"steps": 3, "width": 64, "height": 64, "style": "general"}
# name -> (layout, widths); same seed: the sd15 layouts all hold the same two vectors
FILES = {
    "tinyemb": ("emb_params", None, ".safetensors"),
    "tinysingle": ("single", None, ".safetensors"),
    "tinypt": ("a1111_pt", None, ".pt"),
    "tinybin": ("diffusers_bin", None, ".bin"),
    "tinyxl": ("sdxl", None, ".safetensors"),
    "tinywide": ("emb_params", (48,), ".safetensors"),
}


@pytest.fixture(scope="module")
def models_dir(tiny_models, tmp_path_factory) -> Path:
    """The tiny checkpoints plus an embeddings/ folder of tiny embeddings in every layout."""
    root = tmp_path_factory.mktemp("embedding-models")
    (root / "checkpoints").symlink_to(tiny_models.models_dir / "checkpoints")
    for name, (layout, widths, suffix) in FILES.items():
        save_tiny_embedding(root / "embeddings" / f"{name}{suffix}", layout, widths=widths, seed=7)
    return root


@pytest.fixture
def make_api(make_settings, models_dir):
    from brushwork.facade import Brushwork

    return lambda **overrides: Brushwork(make_settings(models_dir=models_dir, **overrides))


@pytest.fixture(scope="module")
def warm_api(tiny_models, models_dir, tmp_path_factory):
    """One warm Brushwork that may load pickles (for tests that don't count reads)."""
    from brushwork.config import Settings
    from brushwork.facade import Brushwork

    tmp = tmp_path_factory.mktemp("warm-embeddings")
    return Brushwork(Settings.load(home=tiny_models.home, models_dir=models_dir, styles_dir=tmp / "styles",
                                   output_dir=tmp / "out", allow_pickle=True))


def ref(api, name: str) -> AdapterRef:
    path = api.catalog.adapter("embedding", name)
    sha = api.catalog.sha256(path)
    return AdapterRef(name=name, sha256=sha, short_hash=sha[:10])


def plan_for(api, prompt: str, model: str = "tiny-sd15", names: tuple[str, ...] = (), **fields):
    base = api.plan("x", model=model, **FAST, **fields)
    return base.model_copy(update={"prompt": prompt, "prompt_syntax": "a1111",
                                   "embeddings": tuple(ref(api, n) for n in names)})


def px(result) -> np.ndarray:
    return np.asarray(result.images[0]).astype(int)


def lookup(api, plan):
    loaded = api.engine.loaded(plan)
    return loaded.embeddings.lookup(loaded.pipe, api.catalog, api.settings.allow_pickle)


def encode(api, plan):
    """Prompt embeddings (forced even for a plain-text prompt, to compare tensors)."""
    return prompt_kwargs(api.engine.pipeline(plan), plan, embeddings=lookup(api, plan), force_chunked=True)


def test_the_vectors_take_the_names_place_exactly(warm_api):
    """Same result as if the two vectors were rows of the vocabulary: (bos, a, photo, of, v1, v2, eos, pad...)."""
    import torch
    from safetensors.torch import load_file

    plan = plan_for(warm_api, "a photo of TinyEmb", names=("tinyemb",))
    ours = encode(warm_api, plan)["prompt_embeds"]
    pipe = warm_api.engine.pipeline(plan)
    tok, encoder = pipe.tokenizer, pipe.text_encoder
    vectors = load_file(str(warm_api.catalog.adapter("embedding", "tinyemb")))["emb_params"]
    ids = tok("a photo of", add_special_tokens=False).input_ids
    spare = [5000, 5001]  # two vocabulary rows, overwritten for the reference pass only
    row = [tok.bos_token_id, *ids, *spare, tok.eos_token_id]
    row += [tok.pad_token_id] * (CHUNK_TOKENS + 2 - len(row))
    table = encoder.get_input_embeddings().weight
    saved = table[spare].clone()
    with torch.no_grad():
        table[spare] = vectors
        expected = encoder(torch.tensor([row])).last_hidden_state
        table[spare] = saved
    assert torch.allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize(("model", "name"), [("tiny-sd15", "tinyemb"), ("tiny-sdxl", "tinyxl")])
def test_an_embedding_changes_the_conditioning_only_where_named(warm_api, model, name):
    import torch

    named = encode(warm_api, plan_for(warm_api, f"a photo of {name}", model, (name,)))
    as_words = encode(warm_api, plan_for(warm_api, f"a photo of {name}", model))  # not pinned: plain words
    assert not torch.allclose(named["prompt_embeds"], as_words["prompt_embeds"])
    pinned_unused = encode(warm_api, plan_for(warm_api, "a photo of a cat", model, (name,)))
    plain = plan_for(warm_api, "a photo of a cat", model)
    unused = prompt_kwargs(warm_api.engine.pipeline(plain), plain, force_chunked=True)
    for key, value in unused.items():
        assert torch.equal(pinned_unused[key], value), key
    if model == "tiny-sdxl":  # the vectors go through the second encoder too: the pooled output changes
        assert not torch.allclose(named["pooled_prompt_embeds"], as_words["pooled_prompt_embeds"])


def test_embedding_in_the_negative_prompt_and_with_a_weight(warm_api):
    import torch

    negative = encode(warm_api, plan_for(warm_api, "a cat", names=("tinyemb",), negative_prompt="x"
                                         ).model_copy(update={"negative_prompt": "tinyemb, blurry"}))
    plain = encode(warm_api, plan_for(warm_api, "a cat", negative_prompt="x"
                                      ).model_copy(update={"negative_prompt": "tinyemb, blurry"}))
    assert torch.equal(negative["prompt_embeds"], plain["prompt_embeds"])
    assert not torch.equal(negative["negative_prompt_embeds"], plain["negative_prompt_embeds"])
    weighted = encode(warm_api, plan_for(warm_api, "a (tinyemb:1.4)", names=("tinyemb",)))
    unweighted = encode(warm_api, plan_for(warm_api, "a tinyemb", names=("tinyemb",)))
    assert not torch.equal(weighted["prompt_embeds"], unweighted["prompt_embeds"])


def test_every_file_layout_gives_the_same_vectors(warm_api):
    import torch

    results = [encode(warm_api, plan_for(warm_api, f"a {name} dog", names=(name,)))["prompt_embeds"]
               for name in ("tinyemb", "tinysingle", "tinypt", "tinybin")]
    for other in results[1:]:
        assert torch.equal(results[0], other)


def test_file_is_read_once_per_warm_pipeline_and_base_pixels_stay(make_api, monkeypatch):
    reads: list[Path] = []
    real = embeddings_module._read_tensors
    monkeypatch.setattr(embeddings_module, "_read_tensors", lambda path, allow: reads.append(path) or real(path, allow))
    api = make_api()
    base = plan_for(api, "a red fox", seed=5)
    before = px(api.engine.run(base))
    first = api.engine.run(plan_for(api, "a red fox, tinyemb", names=("tinyemb",), seed=5))
    again = api.engine.run(plan_for(api, "(tinyemb:1.2) in a field", names=("tinyemb",), seed=6))
    assert len(reads) == 1
    assert np.abs(px(first) - before).max() > 0 and again.images
    assert np.array_equal(px(api.engine.run(base)), before)  # a Plan without embeddings is unaffected


@pytest.mark.parametrize(("model", "name", "message"), [
    ("tiny-sdxl", "tinyemb", ("embedding 'tinyemb' (tinyemb.safetensors): its vectors are 32 wide, this model's "
                              "text encoders take 32+64 (made for a model with one text encoder?)")),
    ("tiny-sd15", "tinyxl", ("embedding 'tinyxl' (tinyxl.safetensors): its vectors are 32+64 wide, this model's "
                             "text encoder takes 32 (made for SDXL (clip_l + clip_g)?)")),
    ("tiny-sd15", "tinywide", "embedding 'tinywide' (tinywide.safetensors): its vectors are 48 wide"),
])
def test_a_file_of_the_wrong_width_is_a_one_line_refusal(warm_api, model, name, message):
    with pytest.raises(ModelUnavailable) as info:
        warm_api.engine.run(plan_for(warm_api, f"a {name}", model, (name,)))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_pickles_are_refused_unless_allowed(make_api, models_dir):
    api = make_api()
    pinned = AdapterRef(name="tinypt", sha256="0" * 64, short_hash="0" * 10)
    plan = plan_for(api, "a tinypt").model_copy(update={"embeddings": (pinned,)})
    with pytest.raises(BrushworkError) as info:
        api.engine.run(plan)
    assert "pickle" in str(info.value) and "BRUSHWORK_ALLOW_PICKLE" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="pickle file"):  # the reader refuses too, whoever calls it
        embeddings_module._read_tensors(models_dir / "embeddings" / "tinypt.pt", False)


def test_a_changed_file_is_refused_by_its_hash(warm_api):
    plan = plan_for(warm_api, "a tinysingle", names=("tinysingle",))
    wrong = plan.embeddings[0].model_copy(update={"sha256": "f" * 64})
    with pytest.raises(ModelUnavailable, match="changed since the plan was made"):
        warm_api.engine.run(plan.model_copy(update={"embeddings": (wrong,)}))


def test_header_helper_tells_widths_without_torch(models_dir):
    folder = models_dir / "embeddings"
    assert embedding_widths(folder / "tinyemb.safetensors") == (32,)
    assert embedding_widths(folder / "tinyxl.safetensors") == (32, 64)
    assert read_embedding_shape(folder / "tinysingle.safetensors").vectors == 2
    assert read_embedding_shape(folder / "tinypt.pt").widths == (32,)
    assert family_problem((32,), "sd15") is None and family_problem((32, 64), "sdxl") is None
    assert "SDXL needs an embedding with clip_l and clip_g" in family_problem((768,), "sdxl")
    assert "made for two text encoders" in family_problem((768, 1280), "sd15")
    bad = folder.parent / "not-an-embedding.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{nope")
    with pytest.raises(ValueError, match="not a readable .safetensors file"):
        embedding_widths(bad)


def test_pooled_output_is_right_with_a_legacy_eos_config(warm_api):
    """Real SDXL checkpoints say eos_token_id=2, and CLIP then pools at `input_ids.argmax()`: the
    placeholder ids at embedding positions must stay below EOS so that still finds the EOS position."""
    import torch

    plan = plan_for(warm_api, "a photo of tinyxl", "tiny-sdxl", ("tinyxl",))
    text_model = warm_api.engine.pipeline(plan).text_encoder_2.text_model
    modern = encode(warm_api, plan)["pooled_prompt_embeds"]
    saved, text_model.eos_token_id = text_model.eos_token_id, 2
    try:
        legacy = encode(warm_api, plan)["pooled_prompt_embeds"]
    finally:
        text_model.eos_token_id = saved
    assert torch.equal(modern, legacy)
