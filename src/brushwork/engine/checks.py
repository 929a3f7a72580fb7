"""The check a Plan from outside gets before it runs: limits, findable models (refiner too), stored inputs.

Used by the facade (Plans from files and programs) and by worker processes
(Plans from another process); the engine itself trusts a checked Plan.
Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from brushwork.config import Limits
from brushwork.contract.validation import validate_plan
from brushwork.engine.adapters import adapter_path
from brushwork.errors import InvalidRequest
from brushwork.models.catalog import KIND_DIRS, Kind, ModelCatalog
from brushwork.plan import AdapterRef, Plan
from brushwork.storage.assets import AssetStore


def check_plan(plan: Plan, limits: Limits, catalog: ModelCatalog, assets: AssetStore) -> None:
    """Raise a clear error (InvalidRequest / NotFound) now rather than after a progress bar started."""
    validate_plan(plan, limits)
    if plan.model.path is not None:
        catalog.entry_for_path(Path(plan.model.path))
    else:
        catalog.get(plan.model.name)
    if plan.model.variant == "refiner" and plan.mode != "img2img":
        raise InvalidRequest("model", f"{plan.model.name!r} is an SDXL refiner: it only finishes images (img2img)")
    if plan.refine is not None and plan.refine.refiner is not None:
        entry = catalog.checkpoints().get(plan.refine.refiner)
        if entry is None or not catalog.is_installed(entry):
            raise InvalidRequest("refiner", f"{plan.refine.refiner!r} is not installed here; the Plan needs that SDXL "
                                            f"refiner in {catalog.models_dir / 'checkpoints'}")
    _check_files(plan, catalog)
    for ref in plan.assets():
        if not assets.has(ref):
            assets.open(ref)  # raises the "not in the asset store" error naming the hash


def _check_files(plan: Plan, catalog: ModelCatalog) -> None:
    """The Plan's LoRAs, VAE and embeddings are installed here and are the files it was made with.

    Checked by name in the catalog and by sha256 (cached per file version), so a PNG from
    another machine says which file is missing before any weights are loaded.
    """
    kinds: list[tuple[Kind, tuple[AdapterRef, ...]]] = [
        ("lora", plan.loras), ("vae", (plan.vae,) if plan.vae else ()), ("embedding", plan.embeddings)]
    for kind, refs in kinds:
        for ref in refs:
            if catalog.adapter(kind, ref.name) is None:
                raise InvalidRequest(kind, f"{ref.name!r} is not installed here; the Plan needs that {kind} "
                                           f"(sha256 {ref.sha256[:12]}…) in {catalog.models_dir / KIND_DIRS[kind]}")
            adapter_path(catalog, kind, ref)  # ModelUnavailable when the file changed since the Plan was made
