"""The check a Plan from outside gets before it runs: limits, a findable model, stored inputs.

Used by the facade (Plans from files and programs) and by worker processes
(Plans from another process); the engine itself trusts a checked Plan.
Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from brushwork.config import Limits
from brushwork.contract.validation import validate_plan
from brushwork.models.catalog import ModelCatalog
from brushwork.plan import Plan
from brushwork.storage.assets import AssetStore


def check_plan(plan: Plan, limits: Limits, catalog: ModelCatalog, assets: AssetStore) -> None:
    """Raise a clear error (InvalidRequest / NotFound) now rather than after a progress bar started."""
    validate_plan(plan, limits)
    if plan.model.path is not None:
        catalog.entry_for_path(Path(plan.model.path))
    else:
        catalog.get(plan.model.name)
    for ref in plan.assets():
        if not assets.has(ref):
            assets.open(ref)  # raises the "not in the asset store" error naming the hash
