"""Apply a Plan's LoRAs and VAE to a cached pipeline for one run, then undo.

The base pipeline stays in the cache untouched between runs: LoRAs stay loaded
as named PEFT adapters (`engine.lora_cache`) and are switched off afterwards,
a swapped VAE (kept warm by the Engine) is put back.

A file that cannot serve (not a LoRA, made for another model, damaged, a
pickle with Python objects) is a one-line `ModelUnavailable` naming the
adapter and its file, checked from the file's header before diffusers sees it
where possible; diffusers'/PEFT's own multi-line errors never reach the user.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brushwork.errors import ModelUnavailable
from brushwork.models.catalog import Kind, ModelCatalog
from brushwork.plan import AdapterRef

# Key fragments that mark LoRA-family weights in the formats diffusers loads (PEFT/diffusers, kohya, LyCORIS).
_LORA_MARKERS = (
    "lora_A", "lora_B", "lora_down", "lora_up", "lora.down", "lora.up", ".alpha", "lora_linear_layer",
    "hada_w1", "lokr_w1", "dora_scale",
)
# LyCORIS algorithms whose weights are not low-rank pairs: diffusers' LoRA loader cannot apply them.
_UNSUPPORTED_LYCORIS = {"hada_w1": "LoHa", "lokr_w1": "LoKr", "lokr_w2": "LoKr", "oft_blocks": "OFT",
                        "oft_diag": "OFT"}
_LABELS: dict[str, str] = {"lora": "LoRA", "vae": "VAE"}


def adapter_path(catalog: ModelCatalog, kind: Kind, ref: AdapterRef) -> Path:
    """The installed file for `ref`, checked against the hash the Plan pinned."""
    path = catalog.adapter(kind, ref.name)
    if path is None:
        raise ModelUnavailable(f"{kind} {ref.name!r} is not installed in {catalog.models_dir}")
    sha = catalog.sha256(path)
    if sha != ref.sha256:
        raise ModelUnavailable(
            f"{kind} {ref.name!r} ({path.name}) changed since the plan was made "
            f"(plan sha256 {ref.sha256[:12]}, file sha256 {sha[:12]})"
        )
    return path


def unusable(kind: str, name: str, path: Path, why: str) -> ModelUnavailable:
    return ModelUnavailable(f"{_LABELS.get(kind, kind)} {name!r} ({path.name}): {why}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what caused it (diffusers wraps torch's errors in its own)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: BaseException) -> str:
    """One line saying why a library could not load an adapter file."""
    from brushwork.models.loading import first_line, pickle_problem

    for cause in _chain(exc):
        text = str(cause)
        lowered = text.lower()
        if "size mismatch" in lowered or ("shape" in lowered and "mismatch" in lowered):
            return "its tensor shapes do not fit this model (made for another model family or architecture?)"
        if "deserializing header" in text or "header too large" in lowered:
            return "not a readable .safetensors file (damaged, or not a weights file)"
        if "target modules" in lowered and "not found" in lowered:
            return "none of its weights match a layer of this model (made for another model family?)"
        problem = pickle_problem(cause)
        if problem:
            return problem
    return f"{type(exc).__name__}: {first_line(exc)}"


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers logs a failed adapter load as a multi-line error before raising: the raise is enough.
    transformers prints a "LOAD REPORT" table for every text-encoder LoRA (its adapter keys are not
    checkpoint keys): noise to a user, so it is kept quiet too."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    transformers_logging.set_verbosity(transformers_logging.CRITICAL)
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])


def _header_names(path: Path) -> list[str] | None:
    """Tensor names of a .safetensors file (None for other formats); ValueError when unreadable."""
    if path.suffix.lower() != ".safetensors":
        return None
    from brushwork.models.offline_configs import read_checkpoint_keys

    return read_checkpoint_keys(path)


def check_lora_file(name: str, path: Path) -> None:
    """Refuse a file that is no LoRA at all, from its header alone."""
    try:
        names = _header_names(path)
    except ValueError as exc:
        raise unusable("lora", name, path, str(exc)) from None
    if names is None:
        return
    if not names:
        raise unusable("lora", name, path, "the file holds no tensors")
    if not any(marker in key for key in names for marker in _LORA_MARKERS):
        sample = ", ".join(sorted(names)[:2])
        raise unusable("lora", name, path, f"holds no LoRA weights (its tensors are named like {sample})")
    for marker, algorithm in _UNSUPPORTED_LYCORIS.items():
        if any(marker in key for key in names):
            raise unusable("lora", name, path, f"is a LyCORIS {algorithm} file; only LoRA/LoCon files (low-rank "
                                               "pairs) are supported, as in diffusers")


def load_lora(pipe: Any, name: str, path: Path, adapter_name: str, state: dict[str, Any] | None = None) -> None:
    """Load one LoRA (its file, or the tensors already read from it) as a named adapter;
    on failure the pipeline is left as it was."""
    check_lora_file(name, path)
    before = _adapter_names(pipe)
    from brushwork.models.loading import quiet_library_bars

    try:
        with _quiet_diffusers(), quiet_library_bars(), warnings.catch_warnings():
            # PEFT warns that a second adapter joins the first: keeping several is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            pipe.load_lora_weights(dict(state) if state is not None else str(path), adapter_name=adapter_name)
    except Exception as exc:
        _drop_partial(pipe, adapter_name, before)
        raise unusable("lora", name, path, _reason(exc)) from None
    if adapter_name not in _adapter_names(pipe):  # diffusers only warns when no key matched a layer
        raise unusable("lora", name, path, "none of its weights match a layer of this model "
                                            "(made for another model family?)")


def _adapter_names(pipe: Any) -> set[str]:
    try:
        listed = pipe.get_list_adapters()
    except Exception:  # no PEFT layers yet
        return set()
    return {adapter for names in listed.values() for adapter in names}


def _drop_partial(pipe: Any, adapter_name: str, before: set[str]) -> None:
    """Remove what a failed load may have injected, so the cached pipeline stays clean."""
    if adapter_name in _adapter_names(pipe) and adapter_name not in before:
        try:
            pipe.delete_adapters([adapter_name])
        except Exception:  # best effort: nothing more to undo
            pass


def _vae_config_of(folder: Path) -> None:
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except OSError:
        raise ValueError("the folder has no config.json (a diffusers VAE folder needs one)") from None
    except ValueError:
        raise ValueError("its config.json is not valid JSON") from None
    if not isinstance(data, dict) or data.get("_class_name") not in (None, "AutoencoderKL"):
        found = data.get("_class_name") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"its config.json describes {found!r}, not an AutoencoderKL VAE")


def check_vae_file(path: Path, family: str) -> None:
    """Refuse a VAE file/folder that cannot fill `family`'s VAE, from its header or config alone."""
    if path.is_dir():
        _vae_config_of(path)
        return
    if path.suffix.lower() != ".safetensors":
        return
    from brushwork.models.offline_configs import (
        LDM_VAE_PREFIX,
        describe_mismatch,
        mismatches,
        read_checkpoint_shapes,
        shipped_config_dir,
        vae_facts,
    )

    shapes = read_checkpoint_shapes(path)
    prefix = LDM_VAE_PREFIX if any(k.startswith(LDM_VAE_PREFIX) for k in shapes) else ""
    if f"{prefix}decoder.conv_in.weight" not in shapes:
        if "decoder.conv_in.weight" in shapes or any(k.startswith("decoder.up_blocks.") for k in shapes):
            return  # a diffusers-format VAE state dict: diffusers loads it as is
        sample = ", ".join(sorted(shapes)[:2]) or "no tensors"
        raise ValueError(f"holds no VAE weights (its tensors are named like {sample})")
    config_file = shipped_config_dir(family) / "vae" / "config.json"  # type: ignore[arg-type]
    config = json.loads(config_file.read_text(encoding="utf-8"))
    found = mismatches(vae_facts(shapes, config, prefix))
    if found:
        raise ValueError(describe_mismatch(found, "the VAE this model family uses"))


def load_vae(path: Path, family: str, home: Path, torch_dtype: Any) -> Any:
    from diffusers import AutoencoderKL

    from brushwork.models.offline_configs import materialize_config_dir

    if path.is_dir():
        return AutoencoderKL.from_pretrained(str(path), dtype=torch_dtype, local_files_only=True)
    config = materialize_config_dir(family, home)  # type: ignore[arg-type]
    return AutoencoderKL.from_single_file(
        str(path), config=str(config), subfolder="vae", dtype=torch_dtype, local_files_only=True
    )


def load_checked_vae(name: str, path: Path, family: str, home: Path, torch_dtype: Any) -> Any:
    """`load_vae`, with every failure a one-line `ModelUnavailable` naming the VAE and its file."""
    try:
        check_vae_file(path, family)
    except ValueError as exc:
        raise unusable("vae", name, path, str(exc)) from None
    try:
        with _quiet_diffusers():
            return load_vae(path, family, home, torch_dtype)
    except Exception as exc:
        raise unusable("vae", name, path, _reason(exc)) from None
