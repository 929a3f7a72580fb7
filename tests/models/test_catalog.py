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


def test_pickle_checkpoints_are_refused_unless_allowed(tmp_path: Path):
    ckpt = tmp_path / "models" / "checkpoints" / "old.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"pickle")
    with pytest.raises(InvalidRequest, match="BRUSHWORK_ALLOW_PICKLE"):
        _catalog(tmp_path).locate(_catalog(tmp_path).get("old"))
    allowed = _catalog(tmp_path, allow_pickle=True)
    assert allowed.locate(allowed.get("old")) == ckpt


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


def test_folder_hash_covers_weights_and_configs(tmp_path: Path):
    folder = tmp_path / "m"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"1")
    (folder / "unet" / "config.json").write_text("{}")
    cache = HashCache(tmp_path / "h.json")
    before = cache.sha256(folder)
    (folder / "unet" / "config.json").write_text('{"a": 1}')
    assert cache.sha256(folder) != before
