"""Catalog: aliases, scanning, settings entries, actionable errors, cached hashes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from brushwork.config import ModelSource, Settings
from brushwork.errors import InvalidRequest, ModelUnavailable, NotFound
from brushwork.models.catalog import ModelCatalog
from brushwork.models.hashing import HashCache, sha256_file, short_hash


def _catalog(tmp_path: Path, **settings) -> ModelCatalog:
    return ModelCatalog(Settings.load(home=tmp_path / "home", models_dir=tmp_path / "models", **settings))


def test_models_folder_is_scanned_by_stem(tmp_path: Path):
    catalog = _catalog(tmp_path)
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "loras").mkdir()
    (tmp_path / "models" / "checkpoints" / "mymix_v2.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "checkpoints" / "notes.txt").write_text("not a model")
    (tmp_path / "models" / "loras" / "rx7.safetensors").write_bytes(b"y")
    entries = catalog.checkpoints()
    assert entries["mymix_v2"].path == tmp_path / "models" / "checkpoints" / "mymix_v2.safetensors"
    assert "notes" not in entries
    assert catalog.adapter("lora", "rx7") == tmp_path / "models" / "loras" / "rx7.safetensors"
    assert catalog.adapter("lora", "f1") is None


def test_a_file_in_the_models_folder_beats_a_builtin_alias(tmp_path: Path):
    path = tmp_path / "models" / "checkpoints" / "sdxl.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert _catalog(tmp_path).get("sdxl").path == path


def test_settings_errors_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BRUSHWORK_LIMITS__MAX_SIZE", "huge")
    with pytest.raises(InvalidRequest) as info:
        Settings.load()
    assert info.value.field == "setting limits.max_size"
    monkeypatch.delenv("BRUSHWORK_LIMITS__MAX_SIZE")
    bad = tmp_path / "bad.toml"
    bad.write_text("models_dir = [\n")
    with pytest.raises(InvalidRequest, match="invalid TOML"):
        Settings.load(bad)
    bad.write_text('colour = "red"\n')
    with pytest.raises(InvalidRequest, match="setting colour: extra inputs"):
        Settings.load(bad)


def test_builtin_aliases_and_demo_are_listed(tmp_path: Path):
    entries = _catalog(tmp_path).checkpoints()
    assert {"demo", "sd15", "sdxl", "dreamshaper", "meinamix", "realistic-vision", "juggernaut-xl"} <= set(entries)
    assert entries["demo"].demo and "noise" in entries["demo"].description
    assert entries["sd15"].repo_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"


def test_unknown_model_lists_names(tmp_path: Path):
    with pytest.raises(NotFound) as info:
        _catalog(tmp_path).get("dreamshaperr")
    assert "dreamshaper" in info.value.valid and "demo" in info.value.valid


def test_missing_single_file_says_where_to_put_it(tmp_path: Path):
    catalog = _catalog(tmp_path)
    entry = catalog.get("dreamshaper")
    assert not catalog.is_installed(entry)
    with pytest.raises(ModelUnavailable) as info:
        catalog.locate(entry)
    assert str(tmp_path / "models" / "checkpoints" / "dreamshaper_8.safetensors") in str(info.value)


def test_missing_hf_repo_is_an_offline_actionable_error(tmp_path: Path):
    catalog = _catalog(tmp_path, hf_cache=tmp_path / "hf")
    with pytest.raises(ModelUnavailable) as info:
        catalog.locate(catalog.get("sdxl"))
    message = str(info.value)
    assert "stabilityai/stable-diffusion-xl-base-1.0" in message
    assert "sd_xl_base_1.0.safetensors" in message  # the single-file alternative
    assert "never downloads" in message


def test_hf_alias_falls_back_to_single_file_in_checkpoints(tmp_path: Path):
    catalog = _catalog(tmp_path)
    path = tmp_path / "models" / "checkpoints" / "v1-5-pruned-emaonly.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    assert catalog.locate(catalog.get("sd15")) == path


def test_hf_alias_reads_a_cached_snapshot(tmp_path: Path):
    snapshot = tmp_path / "hf" / "models--org--model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    refs = tmp_path / "hf" / "models--org--model" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    catalog = _catalog(tmp_path, hf_cache=tmp_path / "hf",
                       models={"mine": ModelSource(source="org/model", family="sd15")})
    assert catalog.locate(catalog.get("mine")) == snapshot


def test_settings_toml_defines_aliases(tmp_path: Path):
    weights = tmp_path / "elsewhere" / "custom.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"w")
    config = tmp_path / "config.toml"
    config.write_text(textwrap.dedent(f'''
        home = "{tmp_path / 'home'}"
        [models.custom]
        source = "{weights}"
        family = "sdxl"
        description = "my own"
    '''))
    catalog = ModelCatalog(Settings.load(config))
    entry = catalog.get("custom")
    assert (entry.path, entry.family, entry.description) == (weights, "sdxl", "my own")


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin"])
def test_pickle_checkpoints_and_loras_are_refused_unless_allowed(tmp_path: Path, suffix: str):
    ckpt = tmp_path / "models" / "checkpoints" / f"old{suffix}"
    lora = tmp_path / "models" / "loras" / f"style{suffix}"
    for path in (ckpt, lora):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"pickle")
    with pytest.raises(InvalidRequest, match="BRUSHWORK_ALLOW_PICKLE"):
        _catalog(tmp_path).locate(_catalog(tmp_path).get("old"))
    with pytest.raises(InvalidRequest, match="BRUSHWORK_ALLOW_PICKLE"):
        _catalog(tmp_path).adapter("lora", "style")
    allowed = _catalog(tmp_path, allow_pickle=True)
    assert allowed.locate(allowed.get("old")) == ckpt
    assert allowed.adapter("lora", "style") == lora


def test_hashes_are_computed_once_and_redone_when_the_file_changes(tmp_path: Path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"a" * 1000)
    cache = HashCache(tmp_path / "hashes.json")
    first = cache.file_sha256(path)
    assert first == sha256_file(path) and short_hash(first) == first[:10]
    assert HashCache(tmp_path / "hashes.json").file_sha256(path) == first  # another process: cached
    assert cache.computed == 1
    again = HashCache(tmp_path / "hashes.json")
    again.file_sha256(path)
    assert again.computed == 0
    path.write_bytes(b"b" * 1001)
    assert again.file_sha256(path) != first and again.computed == 1


def test_folder_hash_covers_what_loads_and_ignores_variants(tmp_path: Path):
    folder = tmp_path / "m"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "X", "unet": ["diffusers", "U"], "safety_checker": [null, null]}')
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"1")
    (folder / "unet" / "config.json").write_text("{}")
    cache = HashCache(tmp_path / "h.json")
    before = cache.sha256(folder)
    (folder / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"variant")
    (folder / "v1-5-pruned.safetensors").write_bytes(b"a big all-in-one file at the root")
    assert cache.sha256(folder) == before  # files that are not loaded are not hashed
    assert cache.computed == 1
    (folder / "unet" / "config.json").write_text('{"a": 1}')
    assert cache.sha256(folder) != before
    (folder / "unet" / "config.json").write_text("{}")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"2")
    assert cache.sha256(folder) != before


def test_lora_short_hash_is_a1111s_addnet_hash(tmp_path: Path):
    import hashlib

    import torch
    from safetensors.torch import save_file

    from brushwork.models.hashing import lora_short_hash

    path = tmp_path / "l.safetensors"
    save_file({"w": torch.ones(3)}, str(path), metadata={"ss_note": "header metadata does not count"})
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")
    expected = hashlib.sha256(data[8 + header:]).hexdigest()
    assert HashCache(tmp_path / "h.json").file_sha256(path, addnet=True) == expected
    assert lora_short_hash(expected) == expected[:12]
