"""LoRA switching: brushwork's warm adapters against plain diffusers, side by side in one run, as ratios.

Four timings (median of --repeats), all on the same model and LoRA files:

* fresh_load       — plain diffusers, what a server that reloads per request pays: load the pipeline,
                     then `load_lora_weights(B)`. Every ratio below is relative to this.
* diffusers_reload — plain diffusers on a warm pipeline: `unload_lora_weights()` then
                     `load_lora_weights(B)` (the usual way to change LoRA; diffusers #11423).
* first_use        — brushwork, a LoRA file it has not seen: read + load + switch on.
* switch           — brushwork, A → B when both were used before: switch A off, B on. Target ≤ 0.05.

It also checks that the image made with B after switching from A is the image a
fresh plain-diffusers pipeline with only B makes (`identical_pixels`).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lora_switch.py --repeats 5
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lora_switch.py --model-dir DIR --lora-a A.safetensors --lora-b B.safetensors
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class LoraSwitch:
    repeats: int
    fresh_load_s: float
    diffusers_reload_s: float
    first_use_s: float
    switch_s: float
    identical_pixels: bool

    @property
    def switch_vs_fresh_load(self) -> float:
        return self.switch_s / self.fresh_load_s

    @property
    def first_use_vs_fresh_load(self) -> float:
        return self.first_use_s / self.fresh_load_s

    @property
    def diffusers_reload_vs_fresh_load(self) -> float:
        return self.diffusers_reload_s / self.fresh_load_s


def _median(repeats: int, step: Callable[[], float]) -> float:
    return statistics.median(step() for _ in range(repeats))


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _image(pipe: Any) -> np.ndarray:
    import torch

    out = pipe("a lighthouse", num_inference_steps=2, width=64, height=64, guidance_scale=7.0,
               generator=torch.Generator("cpu").manual_seed(3), output_type="np")
    return np.asarray(out.images[0])


def _fresh(model_dir: Path, lora: Path) -> Any:
    from diffusers import StableDiffusionPipeline

    from brushwork.models.loading import quiet_library_bars

    with quiet_library_bars():
        pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True, safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.load_lora_weights(str(lora), adapter_name="b")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def compare(model_dir: Path, home: Path, lora_a: Path, lora_b: Path, repeats: int = 3) -> LoraSwitch:
    from brushwork.config import ModelSource, Settings
    from brushwork.engine.adapters import adapter_path
    from brushwork.engine.lora_cache import WarmLoras
    from brushwork.facade import Brushwork
    from brushwork.models.loading import quiet_library_bars

    models_dir = home / "models"
    (models_dir / "loras").mkdir(parents=True, exist_ok=True)
    for name, source in (("bench-a", lora_a), ("bench-b", lora_b)):
        shutil.copyfile(source, models_dir / "loras" / f"{name}.safetensors")
    settings = Settings.load(home=home, models_dir=models_dir,
                             models={"bench": ModelSource(source=str(model_dir), family="sd15")})
    bw = Brushwork(settings)
    plan_a = bw.plan("a lighthouse", model="bench", loras=[{"name": "bench-a"}])
    plan_b = bw.plan("a lighthouse", model="bench", loras=[{"name": "bench-b"}])
    loaded = bw.engine.loaded(plan_a)  # the engine's own warm pipeline and adapter cache
    path_of = lambda ref: adapter_path(bw.catalog, "lora", ref)  # noqa: E731

    fresh_load = _median(repeats, lambda: _timed(lambda: _fresh(model_dir, lora_b)))

    reload_pipe = _fresh(model_dir, lora_a)

    def diffusers_reload() -> float:
        reload_pipe.unload_lora_weights()
        reload_pipe.load_lora_weights(str(lora_a), adapter_name="a")  # back to A, untimed
        reload_pipe.unload_lora_weights()
        with quiet_library_bars():
            return _timed(lambda: reload_pipe.load_lora_weights(str(lora_b), adapter_name="b"))

    with quiet_library_bars():
        diffusers_reload_s = _median(repeats, diffusers_reload)

    def first_use() -> float:
        loaded.loras.deactivate()
        resident = {name for names in loaded.pipe.get_list_adapters().values() for name in names}
        if resident:
            loaded.pipe.delete_adapters(sorted(resident))
        loaded.loras = WarmLoras(loaded.pipe, loaded.loras.budget_bytes)
        return _timed(lambda: loaded.loras.activate(plan_b.loras, path_of))

    first_use_s = _median(repeats, first_use)
    loaded.loras.activate(plan_a.loras, path_of)  # both now resident

    def switch() -> float:
        loaded.loras.activate(plan_a.loras, path_of)  # on A, untimed
        return _timed(lambda: (loaded.loras.deactivate(), loaded.loras.activate(plan_b.loras, path_of)))

    switch_s = _median(repeats, switch)
    loaded.loras.activate(plan_b.loras, path_of)
    brushwork_b = _image(loaded.pipe)
    loaded.loras.deactivate()
    identical = bool(np.array_equal(brushwork_b, _image(_fresh(model_dir, lora_b))))
    return LoraSwitch(repeats, fresh_load, diffusers_reload_s, first_use_s, switch_s, identical)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="diffusers SD 1.5 folder (default: tiny random model)")
    parser.add_argument("--lora-a", type=Path, help="LoRA file A (default: tiny random LoRA for the model)")
    parser.add_argument("--lora-b", type=Path, help="LoRA file B")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # plain diffusers prints a load report per text-encoder LoRA
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir, lora_a, lora_b = args.model_dir, args.lora_a, args.lora_b
        if model_dir is None:
            from brushwork.testing.factories import save_pipeline, tiny_sd15_pipeline

            model_dir = save_pipeline(tiny_sd15_pipeline(root / "tok"), root / "tiny-sd15")
        if lora_a is None or lora_b is None:
            from diffusers import StableDiffusionPipeline

            from brushwork.models.tiny_lora import save_tiny_lora

            pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True)
            lora_a = save_tiny_lora(pipe, root / "a.safetensors", seed=1, text_encoder=True)
            lora_b = save_tiny_lora(pipe, root / "b.safetensors", seed=2, text_encoder=True, layout="kohya")
        result = compare(model_dir, root / "home", lora_a, lora_b, args.repeats)
    report = {**asdict(result),
              "switch_vs_fresh_load": round(result.switch_vs_fresh_load, 4),
              "first_use_vs_fresh_load": round(result.first_use_vs_fresh_load, 4),
              "diffusers_reload_vs_fresh_load": round(result.diffusers_reload_vs_fresh_load, 4)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
