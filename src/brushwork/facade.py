"""`Brushwork`: the whole system in a few lines, for programs.

    from brushwork import Brushwork
    bw = Brushwork()
    result = bw.generate("midnight blue RX7 on a mountain road", style="cars", type="rx7", seed=7)
    result.images[0].save("car.png"); print(result.plan.to_json())

Styles and the catalog are found on first use; the engine (torch) is built
on the first generation and kept warm for the next. Input images may be
given as a path, bytes, a PIL image or an `AssetRef`; they are checked and
stored once in the asset store, and the Plan names them by hash.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brushwork.config import Settings
from brushwork.contract.assets import AssetRef
from brushwork.contract.events import CancelToken, ProgressCallback
from brushwork.errors import InvalidRequest
from brushwork.models.catalog import ModelCatalog
from brushwork.plan import GenerationRequest, Plan, Result
from brushwork.resolve import Resolver
from brushwork.storage.assets import AssetStore
from brushwork.styles.registry import StyleRegistry

IMAGE_FIELDS = ("init_image", "mask_image")


class Brushwork:
    def __init__(self, settings: Settings | None = None, *, styles: StyleRegistry | None = None) -> None:
        self.settings = settings or Settings.load()
        self._styles = styles
        self._catalog: ModelCatalog | None = None
        self._engine: Any = None
        self.assets = AssetStore(self.settings.assets_dir)
        self._init_lock = threading.Lock()  # one instance may be shared by many threads

    @property
    def styles(self) -> StyleRegistry:
        with self._init_lock:
            if self._styles is None:
                self._styles = StyleRegistry.discover(self.settings.resolved_styles_dir)
            return self._styles

    @property
    def catalog(self) -> ModelCatalog:
        with self._init_lock:
            if self._catalog is None:
                self._catalog = ModelCatalog(self.settings)
            return self._catalog

    @property
    def engine(self) -> Any:
        catalog = self.catalog
        with self._init_lock:
            if self._engine is None:
                from brushwork.engine.engine import Engine

                self._engine = Engine(self.settings, catalog, assets=self.assets)
            return self._engine

    # -- inputs ----------------------------------------------------------------------

    def add_image(self, image: Any, field: str = "image") -> AssetRef:
        """Check and store an input image (path, bytes, PIL image or AssetRef); returns its AssetRef."""
        limits = self.settings.limits
        if isinstance(image, AssetRef):
            if not self.assets.has(image):
                raise InvalidRequest(field, f"image {image.short}… is not in the asset store")
            return image
        if isinstance(image, (str, Path)):
            return self.assets.put_file(Path(image).expanduser(), field=field, limits=limits)
        if isinstance(image, (bytes, bytearray)):
            return self.assets.put_bytes(bytes(image), field=field, limits=limits)
        if hasattr(image, "save") and hasattr(image, "size"):
            return self.assets.put_image(image, field=field, limits=limits)
        raise InvalidRequest(field, f"expected a file path, bytes or a PIL image, got {type(image).__name__}")

    def _stored_inputs(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Replace every image given by value with its AssetRef (the Plan never carries bytes)."""
        out = dict(fields)
        for name in IMAGE_FIELDS:
            if out.get(name) is not None:
                out[name] = self.add_image(out[name], name)
        if out.get("controls") is not None:
            units = []
            for unit in out["controls"]:
                if isinstance(unit, Mapping) and unit.get("image") is not None:
                    unit = {**unit, "image": self.add_image(unit["image"], "control")}
                units.append(unit)
            out["controls"] = units
        return out

    # -- generation ----------------------------------------------------------------------

    def plan(self, prompt: str | GenerationRequest, **fields: Any) -> Plan:
        """Resolve a prompt (+ style, type, overrides, input images) into a fully specified, checked Plan."""
        request = prompt if isinstance(prompt, GenerationRequest) else GenerationRequest.parse(
            self._stored_inputs({"prompt": prompt, **fields})
        )
        return Resolver(self.styles, self.catalog, self.settings.limits, self.assets).resolve(request)

    def check(self, plan: Plan) -> None:
        """Check a Plan from outside (a file, another program) against this deployment and its assets."""
        from brushwork.engine.checks import check_plan

        check_plan(plan, self.settings.limits, self.catalog, self.assets)

    def run(self, plan: Plan, on_progress: ProgressCallback | None = None,
            cancel: CancelToken | None = None) -> Result:
        """Run a Plan from anywhere: it is checked first (`check`), then executed."""
        self.check(plan)
        return self.engine.run(plan, on_progress=on_progress, cancel=cancel)

    def generate(self, prompt: str | GenerationRequest, *, on_progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None, **fields: Any) -> Result:
        """Plan and run in one call; returns PIL images plus the Plan."""
        plan = self.plan(prompt, **fields)  # checked by resolve: no second check
        return self.engine.run(plan, on_progress=on_progress, cancel=cancel)

    def replay(self, image: Path, on_progress: ProgressCallback | None = None) -> Result:
        """Run the Plan embedded in a brushwork PNG again."""
        return self.run(self.read_plan(image), on_progress=on_progress)

    def read_plan(self, image: Path) -> Plan:
        from brushwork.post.metadata import read_plan

        return read_plan(image)

    def save(self, result: Result, output_dir: Path | None = None) -> list[Path]:
        from brushwork.storage.local import LocalStorage

        return LocalStorage(output_dir or self.settings.output_dir).save(result)
