"""brushwork vs plain diffusers, side by side in one run, reported as ratios.

Three ways to make the same N images (same model, prompt, sampler, seeds):

* naive   — what seed 000's engine does: load the pipeline, generate one image,
            unload, for every image (plain diffusers calls);
* diffusers — a warm diffusers pipeline, called once per image;
* brushwork — one `Brushwork` instance (warm pipeline cache), one Plan per image.

All three must produce identical pixels (checked), so the timings compare the
same work. Runs on the tiny random SD 1.5 model by default (CPU-friendly), or
on any diffusers folder with --model-dir.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/txt2img_vs_diffusers.py --images 4 --steps 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Comparison:
    images: int
    steps: int
    size: str
    naive_s: float
    diffusers_warm_s: float
    brushwork_cold_s: float  # a fresh Brushwork: its one load included
    brushwork_warm_s: float  # the same images again, pipeline already cached
    brushwork_loads: int
    identical_pixels: bool

    @property
    def speedup_vs_naive(self) -> float:
        return self.naive_s / self.brushwork_cold_s

    @property
    def overhead_vs_warm_diffusers(self) -> float:
        return self.brushwork_warm_s / self.diffusers_warm_s


def _diffusers_call(pipe: Any, plan: Any) -> Any:
    import torch

    from brushwork.runtime.samplers import scheduler_for

    pipe.scheduler = scheduler_for(plan.sampler).build(pipe.scheduler.config, plan.seeds)
    return pipe(
        prompt=plan.prompt, negative_prompt=plan.negative_prompt or None, width=plan.width, height=plan.height,
        num_inference_steps=plan.steps, guidance_scale=plan.cfg,
        generator=[torch.Generator("cpu").manual_seed(s) for s in plan.seeds],
    ).images[0]


def _load_diffusers(model_dir: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(model_dir), local_files_only=True, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def compare(model_dir: Path, home: Path, images: int = 4, steps: int = 8, size: int = 256) -> Comparison:
    from brushwork.config import ModelSource, Settings
    from brushwork.facade import Brushwork
    from brushwork.styles.recipe import Recipe
    from brushwork.styles.registry import StyleRegistry
    from brushwork.styles.spec import StyleSpec

    def passthrough(prompt: str, **_: Any) -> Recipe:
        return Recipe(model="bench", prompt=prompt, negative_prompt="blurry")

    settings = Settings.load(home=home, models={"bench": ModelSource(source=str(model_dir), family="sd15")})
    bw = Brushwork(settings, styles=StyleRegistry([StyleSpec(name="general", build=passthrough)]))
    plans = [bw.plan("a lighthouse on a cliff", seed=seed, steps=steps, width=size, height=size,
                     sampler="DPM++ 2M Karras") for seed in range(images)]

    started = time.perf_counter()
    naive = []
    for plan in plans:
        pipe = _load_diffusers(model_dir)
        naive.append(_diffusers_call(pipe, plan))
        del pipe
    naive_s = time.perf_counter() - started

    pipe = _load_diffusers(model_dir)
    _diffusers_call(pipe, plans[0])  # warm-up, not timed
    started = time.perf_counter()
    warm = [_diffusers_call(pipe, plan) for plan in plans]
    warm_s = time.perf_counter() - started

    started = time.perf_counter()
    ours = [bw.run(plan).images[0] for plan in plans]
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    ours_warm = [bw.run(plan).images[0] for plan in plans]
    warm_brushwork_s = time.perf_counter() - started

    identical = all(
        all(np.array_equal(np.asarray(a), np.asarray(other)) for other in others)
        for a, *others in zip(ours, ours_warm, naive, warm, strict=True)
    )
    return Comparison(images, steps, f"{size}x{size}", naive_s, warm_s, cold_s, warm_brushwork_s,
                      bw.engine.cache.stats.loads, identical)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="diffusers SD 1.5 folder (default: tiny random model)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from brushwork.testing.factories import save_pipeline, tiny_sd15_pipeline

            model_dir = save_pipeline(tiny_sd15_pipeline(Path(tmp) / "tok"), Path(tmp) / "tiny-sd15")
        result = compare(model_dir, Path(tmp) / "home", args.images, args.steps, args.size)
    report = {**asdict(result), "speedup_vs_naive": round(result.speedup_vs_naive, 2),
              "overhead_vs_warm_diffusers": round(result.overhead_vs_warm_diffusers, 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
