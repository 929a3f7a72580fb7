"""Settings: every bad value is one `InvalidRequest` naming the setting and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from brushwork.config import Settings
from brushwork.errors import InvalidRequest


def _error(**env_and_args: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        Settings.load(**env_and_args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps", "CUDA:1"])
def test_devices_that_exist_are_accepted(monkeypatch: pytest.MonkeyPatch, device: str):
    monkeypatch.setenv("BRUSHWORK_DEVICE", device)
    assert Settings.load().device == device.lower()


@pytest.mark.parametrize("device", ["tpu", "cuda:", "cuda:x", "gpu", "cuda0", ""])
def test_an_unknown_device_names_the_setting_and_the_choices(monkeypatch: pytest.MonkeyPatch, device: str):
    monkeypatch.setenv("BRUSHWORK_DEVICE", device)
    error = _error()
    assert error.field == "setting device"
    assert "allowed: auto, cpu, cuda, cuda:N" in error.message and "mps" in error.message
    assert "BRUSHWORK_DEVICE" in error.message


def test_device_is_checked_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys; from brushwork.config import Settings\n"
            "try:\n    Settings.load(device='tpu')\nexcept Exception as e:\n    print(type(e).__name__)\n"
            "assert 'torch' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "InvalidRequest", done.stderr


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_bytes('models_dir = "/tmp/caf\xe9"\n'.encode("latin-1"))
    error = _error(config_file=config)
    assert error.field == "config"
    assert str(config) in error.message and "not UTF-8" in error.message and "0xe9" in error.message


def test_brushwork_config_pointing_nowhere_is_an_error_like_the_option(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BRUSHWORK_CONFIG", str(tmp_path / "missing.toml"))
    error = _error()
    assert error.field == "config"
    assert "missing.toml" in error.message and "does not exist" in error.message
    assert "BRUSHWORK_CONFIG" in error.message
    monkeypatch.setenv("BRUSHWORK_CONFIG", str(tmp_path))
    assert "is a folder" in _error().message


def test_brushwork_config_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "c.toml"
    config.write_text("[limits]\nmax_size = 512\n", encoding="utf-8")
    monkeypatch.setenv("BRUSHWORK_CONFIG", str(config))
    assert Settings.load().limits.max_size == 512


def test_the_default_config_location_may_be_absent():
    assert Settings.load().device == "auto"  # XDG_CONFIG_HOME points at an empty sandbox


@pytest.mark.parametrize("setting", ["home", "models_dir", "styles_dir", "output_dir", "hf_cache"])
def test_a_folder_setting_that_names_a_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       setting: str):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(f"BRUSHWORK_{setting.upper()}", str(blocker))
    error = _error()
    assert error.field == f"setting {setting}"
    assert "is a file" in error.message and "folder" in error.message
    assert f"BRUSHWORK_{setting.upper()}" in error.message


def test_a_folder_setting_may_name_a_folder_not_made_yet(tmp_path: Path):
    assert Settings.load(home=tmp_path / "new").home == tmp_path / "new"


def test_contradicting_limits_are_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BRUSHWORK_LIMITS__MIN_SIZE", "1024")
    monkeypatch.setenv("BRUSHWORK_LIMITS__MAX_SIZE", "512")
    error = _error()
    assert error.field == "setting limits"
    assert "min_size 1024 is larger than max_size 512" in error.message


def test_contradicting_limits_in_a_config_file(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("[limits]\nmin_size = 256\nmax_size = 128\n", encoding="utf-8")
    assert "min_size 256 is larger than max_size 128" in _error(config_file=config).message


def test_tile_overlap_must_be_smaller_than_the_tile():
    error = _error(upscale_tile=64, upscale_tile_overlap=64)
    assert error.field == "settings"
    assert "upscale_tile_overlap 64 must be smaller than upscale_tile 64" in error.message


def test_type_errors_still_name_the_setting_and_its_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BRUSHWORK_PIPELINE_CACHE_SIZE", "many")
    error = _error()
    assert error.field == "setting pipeline_cache_size"
    assert "valid integer" in error.message and "BRUSHWORK_PIPELINE_CACHE_SIZE" in error.message
