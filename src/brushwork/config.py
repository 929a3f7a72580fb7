"""Settings: built once per process from (highest first) explicit arguments,
`BRUSHWORK_*` environment variables and a TOML file, then passed down.

Nothing here is read at import time; `Settings.load()` does the reading.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from brushwork.contract.families import Family
from brushwork.errors import InvalidRequest

_config_file: ContextVar[Path | None] = ContextVar("brushwork_config_file", default=None)


DEVICES = "auto, cpu, cuda, cuda:N (N = GPU index), mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


def default_config_file() -> Path:
    """`$BRUSHWORK_CONFIG`, else `$XDG_CONFIG_HOME/brushwork/config.toml`."""
    explicit = os.environ.get("BRUSHWORK_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "brushwork" / "config.toml"


def _default_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "brushwork"


class ModelSource(BaseModel):
    """Where an aliased model's weights are.

    `source` is a diffusers folder, a single-file checkpoint (absolute, or
    relative to `models_dir/checkpoints`), or a Hugging Face repo id read
    from the local HF cache. `config` optionally names a diffusers folder
    whose configs describe a single-file checkpoint's architecture.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    family: Family | None = None
    config: str | None = None
    description: str = ""


class Limits(BaseModel):
    """Bounds that requests are validated against (configurable per deployment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_size: int = Field(default=64, ge=8)
    max_size: int = Field(default=2048, ge=8)
    max_steps: int = Field(default=150, ge=1)
    max_batch: int = Field(default=16, ge=1)
    max_prompt_chars: int = Field(default=4000, ge=1)
    max_image_pixels: int = Field(default=4096 * 4096, ge=64 * 64,
                                  description="input images larger than this are refused (decompression bombs)")
    max_image_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="largest input image file")
    max_upscale: float = Field(default=4.0, ge=1.0, description="largest total upscale factor")
    max_loras: int = Field(default=8, ge=0, description="LoRAs one generation may apply")

    @model_validator(mode="after")
    def _consistent(self) -> Limits:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size {self.min_size} is larger than max_size {self.max_size}; "
                             "min_size must be at most max_size")
        return self


MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week


class S3Settings(BaseModel):
    """`[server.s3]`: keep results in an S3-compatible bucket instead of the local results folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    prefix: str = Field(default="", description="key prefix, e.g. 'brushwork/results/' ('/' added if missing)")
    endpoint_url: str | None = Field(default=None, description="R2 / MinIO / GCS interop endpoint; None: AWS")
    region: str | None = Field(default=None, description="e.g. 'us-east-1'; R2: 'auto'")
    access_key_id: str | None = Field(default=None, description="None: boto3's usual chain (env, profile, role)")
    secret_access_key: SecretStr | None = Field(default=None, description="never logged, never in repr")
    presign_seconds: int = Field(default=3600, ge=0, le=MAX_PRESIGN_SECONDS,
                                 description="lifetime of presigned image URLs; 0: serve through the API")
    addressing_style: Literal["auto", "path", "virtual"] = "auto"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.lstrip("/")
        if value and not value.endswith("/"):
            value += "/"
        if "//" in value or any(part in (".", "..") for part in value.split("/")[:-1]):
            raise ValueError(f"not a usable key prefix: {value!r}")
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"endpoint_url must be an http(s) URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> S3Settings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither (boto3's usual chain)")
        return self


class ServerSettings(BaseModel):
    """`brushwork serve`: where it listens, how much it queues, who may call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=7860, ge=1, le=65535)
    workers: int = Field(default=0, ge=0, le=64,
                         description="engine worker processes; 0 = one per detected GPU (one on a CPU-only machine)")
    worker_mode: Literal["process", "inprocess"] = Field(
        default="process", description="'process': supervised worker processes; 'inprocess': the server's own")
    max_queued: int = Field(default=100, ge=1, description="more queued jobs → 429")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="larger request bodies → 413")
    max_attempts: int = Field(default=3, ge=1, description="runs of a job whose worker crashed, before it fails")
    generate_timeout: float = Field(default=300.0, gt=0, description="POST /v1/generate waits this long")
    api_keys: tuple[str, ...] = Field(default=(), description="Bearer keys; empty = no authentication")
    cors_origins: tuple[str, ...] = ()
    drain_timeout: float = Field(default=60.0, ge=0, description="on SIGTERM, how long the running job may finish")
    s3: S3Settings | None = Field(default=None, description="keep results in an S3-compatible bucket")
    history_days: float = Field(default=30.0, gt=0, description="finished jobs and their images are purged after this")
    image_days: float | None = Field(default=None, gt=0,
                                     description="stored result images are deleted sooner than their jobs; "
                                                 "None = with the job (history_days)")
    rate_limit: float = Field(default=0.0, ge=0, description="jobs per minute per API key (or client address); 0 = off")
    max_batch_size: int = Field(default=4, ge=1, le=64,
                                description="images per batched run of compatible jobs; 1 = no dynamic batching")
    batch_wait: float = Field(default=0.05, ge=0, le=5,
                              description="seconds a job waits for compatible jobs to batch with")
    preview_every: int = Field(default=5, ge=0, le=1000,
                               description="a JPEG latent preview in every Nth progress event; 0 = none")
    allow_image_urls: bool = Field(default=False, description="accept http(s) image URLs in requests (SSRF-guarded)")
    image_url_timeout: float = Field(default=10.0, gt=0, le=120, description="seconds to fetch one image URL")


class Settings(BaseSettings):
    """Process-wide configuration. Construct with `Settings.load()`."""

    model_config = SettingsConfigDict(
        env_prefix="BRUSHWORK_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    home: Path = Field(default_factory=_default_home, description="cache: demo model, configs, hashes")
    models_dir: Path | None = Field(default=None, description="checkpoints/ loras/ vae/ ... (default: HOME/models)")
    styles_dir: Path | None = Field(default=None, description="user styles (default: next to the config file)")
    output_dir: Path = Path("outputs")
    hf_cache: Path | None = Field(default=None, description="Hugging Face hub cache (default: HF's own)")
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    threads: int = Field(default=0, ge=0, le=1024, description="CPU threads for torch; 0: torch's default (one per "
                                                                 "core). On a busy shared machine fewer can be faster")
    allow_pickle: bool = Field(default=False, description="permit .ckpt files (loaded weights_only)")
    pipeline_cache_size: int = Field(default=2, ge=1, description="pipelines kept warm in memory")
    lora_cache_mb: int = Field(default=1024, ge=0, description="LoRA weights kept loaded per warm pipeline "
                                                              "(least recently used evicted first; 0: none kept)")
    upscale_tile: int = Field(default=256, ge=32, description="upscaler tile size in pixels (bounds memory)")
    upscale_tile_overlap: int = Field(default=16, ge=0, description="pixels tiles overlap, blended at seams")
    safety_filter: str | None = Field(default=None, description="'module:callable' or a brushwork.safety entry point")
    limits: Limits = Field(default_factory=Limits)
    server: ServerSettings = Field(default_factory=ServerSettings)
    models: dict[str, ModelSource] = Field(default_factory=dict)

    @field_validator("home", "models_dir", "styles_dir", "output_dir", "hf_cache")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if value.exists() and not value.is_dir():
            raise ValueError(f"{str(value)!r} is a file; this setting names a folder (existing or to be made)")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"{value!r} is not a device; allowed: {DEVICES}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.upscale_tile_overlap >= self.upscale_tile:
            raise ValueError(f"upscale_tile_overlap {self.upscale_tile_overlap} must be smaller than "
                             f"upscale_tile {self.upscale_tile}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_file.get() or default_config_file()
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Read env + TOML (`config_file` or the default location) + overrides.

        A bad value anywhere (env, TOML, overrides) is an `InvalidRequest`
        naming the setting, never a traceback. A config file named by
        `config_file` or `$BRUSHWORK_CONFIG` must exist; the default location
        may be absent.
        """
        toml_file = _checked_config_file(config_file)
        token = _config_file.set(toml_file)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise _setting_error(exc) from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidRequest("config", f"{toml_file}: invalid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise InvalidRequest(
                "config", f"{toml_file}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save it as UTF-8") from None
        except OSError as exc:
            raise InvalidRequest("config", f"{toml_file}: cannot read: {exc.strerror or exc}") from None
        finally:
            _config_file.reset(token)

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.home / "models"

    @property
    def results_dir(self) -> Path:
        """Server results, content-addressed by the Plan: an identical job is answered from here."""
        return self.home / "results"

    @property
    def jobs_db(self) -> Path:
        return self.home / "jobs.sqlite3"

    @property
    def assets_dir(self) -> Path:
        """Content-addressed input images (init, mask, control maps) that Plans reference by sha256."""
        return self.home / "assets"

    @property
    def resolved_styles_dir(self) -> Path:
        return self.styles_dir or default_config_file().parent / "styles"


def _checked_config_file(config_file: Path | None) -> Path:
    """The TOML file to read; an explicitly named one (argument or `$BRUSHWORK_CONFIG`) must be a file."""
    if config_file is not None:
        path, origin = Path(config_file).expanduser(), ""
    elif os.environ.get("BRUSHWORK_CONFIG"):
        path, origin = default_config_file(), " (from BRUSHWORK_CONFIG)"
    else:
        return default_config_file()  # the default location may be absent
    if path.is_dir():
        raise InvalidRequest("config", f"config file {str(path)!r}{origin} is a folder; name a .toml file")
    if not path.is_file():
        raise InvalidRequest("config", f"config file {str(path)!r}{origin} does not exist")
    return path


def _setting_error(exc: ValidationError) -> InvalidRequest:
    """The first validation error as one line naming the setting and its environment variable."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    error = (err.get("ctx") or {}).get("error")
    # Our own validators' messages are written for people: keep them as they are.
    message = str(error) if err["type"] == "value_error" and error is not None else err["msg"].lower()
    if not loc:  # a rule across settings: the message names them
        return InvalidRequest("settings", f"{message} (from BRUSHWORK_* or the config file)")
    source = "BRUSHWORK_" + "__".join(loc).upper()
    if loc == ["limits"]:  # a rule across limits
        source += "__*"
    return InvalidRequest(f"setting {'.'.join(loc)}", f"{message} (from {source} or the config file)")
