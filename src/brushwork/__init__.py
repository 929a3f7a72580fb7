"""brushwork: Stable Diffusion inference with styles as plugins and fully specified Plans.

Importing this package does nothing but define names: no torch import, no
device probing, no registry filling.
"""

from __future__ import annotations

from brushwork.contract.assets import AssetRef
from brushwork.contract.events import CancelToken
from brushwork.contract.params import ControlUnit, UpscaleStep
from brushwork.contract.version import VERSION as __version__
from brushwork.errors import (
    BrushworkError,
    Cancelled,
    InvalidRequest,
    ModelUnavailable,
    NotFound,
)
from brushwork.facade import Brushwork
from brushwork.plan import GenerationRequest, Plan, Result
from brushwork.styles.recipe import LoraRef, Recipe
from brushwork.styles.spec import style

__all__ = [
    "AssetRef", "Brushwork", "BrushworkError", "CancelToken", "Cancelled", "ControlUnit", "GenerationRequest",
    "InvalidRequest", "LoraRef", "ModelUnavailable", "NotFound", "Plan", "Recipe", "Result", "UpscaleStep",
    "__version__", "style",
]
