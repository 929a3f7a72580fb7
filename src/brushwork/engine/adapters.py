"""Apply a Plan's LoRAs and VAE to a cached pipeline for one run, then undo.

The base pipeline stays in the cache untouched between runs: LoRAs are loaded
as named PEFT adapters and unloaded afterwards, a swapped VAE is put back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brushwork.errors import ModelUnavailable
from brushwork.models.catalog import Kind, ModelCatalog
from brushwork.plan import AdapterRef, Plan


def adapter_path(catalog: ModelCatalog, kind: Kind, ref: AdapterRef) -> Path:
    """The installed file for `ref`, checked against the hash the Plan pinned."""
    path = catalog.adapter(kind, ref.name)
    if path is None:
        raise ModelUnavailable(f"{kind} {ref.name!r} is not installed in {catalog.models_dir}")
    sha = catalog.sha256(path)
    if sha != ref.sha256:
        raise ModelUnavailable(
            f"{kind} {ref.name!r} changed since the plan was made (plan {ref.short_hash}, file {sha[:10]})"
        )
    return path


def load_vae(path: Path, family: str, home: Path, torch_dtype: Any) -> Any:
    from diffusers import AutoencoderKL

    from brushwork.models.offline_configs import materialize_config_dir

    if path.is_dir():
        return AutoencoderKL.from_pretrained(str(path), dtype=torch_dtype, local_files_only=True)
    config = materialize_config_dir(family, home)  # type: ignore[arg-type]
    return AutoencoderKL.from_single_file(
        str(path), config=str(config), subfolder="vae", dtype=torch_dtype, local_files_only=True
    )


@contextmanager
def applied_adapters(pipe: Any, plan: Plan, catalog: ModelCatalog, torch_dtype: Any) -> Iterator[None]:
    names: list[str] = []
    original_vae = pipe.vae
    try:
        for ref in plan.loras:
            name = f"{ref.name}_{ref.short_hash}"
            pipe.load_lora_weights(str(adapter_path(catalog, "lora", ref)), adapter_name=name)
            names.append(name)
        if names:
            pipe.set_adapters(names, adapter_weights=[ref.weight for ref in plan.loras])
        if plan.vae is not None:
            vae = load_vae(adapter_path(catalog, "vae", plan.vae), plan.model.family,
                           catalog.settings.home, torch_dtype)
            pipe.vae = vae.to(original_vae.device)
        yield
    finally:
        if names:
            pipe.delete_adapters(names)
        if pipe.vae is not original_vae:
            pipe.vae = original_vae
