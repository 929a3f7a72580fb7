"""`Brushwork`: the whole system in a few lines, for programs.

    from brushwork import Brushwork
    bw = Brushwork()
    result = bw.generate("midnight blue RX7 on a mountain road", style="cars", type="rx7", seed=7)
    result.images[0].save("car.png"); print(result.plan.to_json())

Styles and the catalog are found on first use; the engine (torch) is built
on the first generation and kept warm for the next.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from brushwork.config import Settings
from brushwork.engine.progress import CancelToken, ProgressCallback
from brushwork.models.catalog import ModelCatalog
from brushwork.plan import GenerationRequest, Plan, Result
from brushwork.resolve import Resolver
from brushwork.styles.registry import StyleRegistry


class Brushwork:
    def __init__(self, settings: Settings | None = None, *, styles: StyleRegistry | None = None) -> None:
        self.settings = settings or Settings.load()
        self._styles = styles
        self._catalog: ModelCatalog | None = None
        self._engine: Any = None
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

                self._engine = Engine(self.settings, catalog)
            return self._engine

    def plan(self, prompt: str | GenerationRequest, **fields: Any) -> Plan:
        """Resolve a prompt (+ style, type, overrides) into a fully specified Plan."""
        request = prompt if isinstance(prompt, GenerationRequest) else GenerationRequest.parse(
            {"prompt": prompt, **fields}
        )
        return Resolver(self.styles, self.catalog, self.settings.limits).resolve(request)

    def run(self, plan: Plan, on_progress: ProgressCallback | None = None,
            cancel: CancelToken | None = None) -> Result:
        return self.engine.run(plan, on_progress=on_progress, cancel=cancel)

    def generate(self, prompt: str | GenerationRequest, *, on_progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None, **fields: Any) -> Result:
        """Plan and run in one call; returns PIL images plus the Plan."""
        return self.run(self.plan(prompt, **fields), on_progress=on_progress, cancel=cancel)

    def replay(self, image: Path, on_progress: ProgressCallback | None = None) -> Result:
        """Run the Plan embedded in a brushwork PNG again."""
        from brushwork.post.metadata import read_plan

        return self.run(read_plan(image), on_progress=on_progress)

    def save(self, result: Result, output_dir: Path | None = None) -> list[Path]:
        from brushwork.storage.local import LocalStorage

        return LocalStorage(output_dir or self.settings.output_dir).save(result)
