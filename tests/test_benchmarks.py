"""The benchmark compares like with like: identical pixels, one load for N images."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _benchmark(file_name: str):  # -> module
    """Import a benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{Path(file_name).stem}", BENCHMARKS / file_name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_benchmark_paths_make_identical_images_and_brushwork_loads_once(tiny_models, tmp_path: Path):
    module = _benchmark("txt2img_vs_diffusers.py")
    result = module.compare(tiny_models.sd15_folder, tmp_path / "home", images=2, steps=2, size=64)
    assert result.identical_pixels  # brushwork = plain diffusers, pixel for pixel
    assert result.brushwork_loads == 1
    assert min(result.naive_s, result.diffusers_warm_s, result.brushwork_cold_s, result.brushwork_warm_s) > 0


def test_throughput_benchmark_batches_concurrent_clients_and_keeps_their_pixels(tiny_models, tmp_path: Path):
    module = _benchmark("server_throughput.py")
    result = module.compare(tiny_models.sd15_folder, tmp_path / "home", clients=3, steps=2, size=64)
    assert result.batches == [3]  # three concurrent clients, one engine run
    assert result.max_pixel_difference <= 1  # every job's image is its request's plain-diffusers image
    assert min(result.diffusers_loop_s, result.one_client_s, result.concurrent_s, result.batched_s) > 0


def test_lora_switch_benchmark_switches_warm_adapters_and_keeps_the_pixels(tiny_models, tmp_path: Path):
    module = _benchmark("lora_switch.py")
    loras = tiny_models.models_dir / "loras"
    result = module.compare(tiny_models.sd15_folder, tmp_path / "home", loras / "tinylora-te.safetensors",
                            loras / "tinylora-b.safetensors", repeats=1)
    assert result.identical_pixels  # B after A on the warm pipeline = a fresh diffusers pipeline with B
    assert min(result.fresh_load_s, result.diffusers_reload_s, result.first_use_s, result.switch_s) > 0
