"""GenerationRequest + style + catalog → Plan: where every default is decided, once.

* `request` — checks a request can fail on before any model is looked up;
* `defaults` — the family defaults, the last layer of every merge;
* `resolver` — `Resolver`: style, model, files and parameter groups into a checked Plan.
"""

from __future__ import annotations

from brushwork.resolve.defaults import FAMILY_DEFAULTS, FamilyDefaults
from brushwork.resolve.request import seeds_for, validate_request
from brushwork.resolve.resolver import Resolver

__all__ = ["FAMILY_DEFAULTS", "FamilyDefaults", "Resolver", "seeds_for", "validate_request"]
