"""Save results as numbered PNGs in a folder: `00012-7-cars.png` (counter-seed-style).

The counter continues from the highest number already present, and files are
created exclusively, so two processes writing to one folder never overwrite
each other's images.
"""

from __future__ import annotations

import re
from pathlib import Path

from brushwork.plan import Result
from brushwork.post.metadata import png_info

_NUMBERED = re.compile(r"^(\d{5,})-")


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.glob("*.png") if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=-1) + 1


def _filtered(result: Result, index: int) -> bool:
    return index < len(result.filtered) and result.filtered[index]


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, result: Result) -> list[Path]:
        self.root.mkdir(parents=True, exist_ok=True)
        paths = []
        number = _next_number(self.root)
        for index, image in enumerate(result.images):
            while True:
                path = self.root / f"{number:05d}-{result.plan.seeds[index]}-{result.plan.style}.png"
                number += 1
                try:
                    with path.open("xb") as fh:
                        image.save(fh, format="PNG", pnginfo=png_info(result.plan, index, _filtered(result, index)))
                    break
                except FileExistsError:
                    continue
            paths.append(path)
        return paths
