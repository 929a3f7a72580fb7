"""Server throughput: N concurrent clients against one client, side by side in one run, as ratios.

The same N single-image requests (one prompt each, own seed) are answered
four ways, all on one warm engine:

* diffusers_loop — a warm plain-diffusers pipeline called once per request
                   (what a naive "asyncio queue in front of a GPU loop" server does);
* one_client     — brushwork's job service, one client: submit, wait, submit the next;
* concurrent     — N clients submit at once, dynamic batching off (max_batch_size=1);
* batched        — N clients submit at once, dynamic batching on (max_batch_size=N).

Every job's pixels are checked against the plain-diffusers image of the same
request (at most one 8-bit level apart: batched kernels round differently),
so the timings compare the same work. Reports images/s and each way's
throughput relative to one client. Batching pays most on a GPU, where one
image leaves the device idle; on a CPU the gain is smaller.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/server_throughput.py --clients 4 --steps 8 --size 128
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROMPTS = ("a lighthouse on a cliff", "a red fox in snow", "a bowl of ramen", "a sailing ship at dawn",
           "a city street in rain", "a mountain lake", "an old library", "a desert at night")


@dataclass
class Throughput:
    clients: int
    steps: int
    size: str
    diffusers_loop_s: float
    one_client_s: float
    concurrent_s: float
    batched_s: float
    batches: list[int]  # jobs per engine run in the batched way
    max_pixel_difference: int  # vs the plain-diffusers image of each request

    def images_per_second(self, seconds: float) -> float:
        return self.clients / seconds

    @property
    def batched_vs_one_client(self) -> float:
        return self.one_client_s / self.batched_s

    @property
    def concurrent_vs_one_client(self) -> float:
        return self.one_client_s / self.concurrent_s

    @property
    def batched_vs_diffusers_loop(self) -> float:
        return self.diffusers_loop_s / self.batched_s


def _pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


async def _serve(bw: Any, plans: list[Any], *, concurrent: bool, max_batch_size: int,
                 root: Path) -> tuple[float, dict[str, bytes], list[int]]:
    """Answer `plans` through a JobService on `bw`'s warm engine; returns (seconds, png by prompt, batches)."""
    from brushwork.jobs.clients import InProcessClient
    from brushwork.jobs.service import JobService
    from brushwork.jobs.store import SqliteJobStore
    from brushwork.jobs.types import JobStatus
    from brushwork.storage.results import ResultStore

    class Recording(InProcessClient):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.batches: list[int] = []

        def run_batch(self, plans: list[Any], on_event: Any, cancel: Any) -> Any:
            self.batches.append(len(plans))
            return super().run_batch(plans, on_event, cancel)

    client = Recording(bw.settings, bw.engine)
    store = SqliteJobStore(root / "jobs.sqlite")
    results = ResultStore(root / "results")
    service = JobService(store, results, [client], max_queued=1000, max_batch_size=max_batch_size,
                         batch_wait=0.05 if max_batch_size > 1 else 0.0)
    await service.start()

    async def one(plan: Any) -> str:
        record = await service.submit(plan)
        async for event in service.events(record.id):
            if event["type"] in ("failed", "cancelled"):
                raise RuntimeError(f"job failed: {event}")
        finished = store.get(record.id)
        assert finished is not None and finished.status is JobStatus.SUCCEEDED
        return finished.images[0]

    # loads the weights (once per engine) and warms the engine thread; not timed
    await one(plans[0].model_copy(update={"seeds": (plans[0].seeds[0] + 10_000,)}))
    client.batches.clear()
    started = time.perf_counter()
    if concurrent:
        keys = await asyncio.gather(*(one(plan) for plan in plans))
    else:
        keys = [await one(plan) for plan in plans]
    seconds = time.perf_counter() - started
    await service.stop()
    store.close()
    return seconds, {plan.prompt: results.read(key) for plan, key in zip(plans, keys, strict=True)}, client.batches


def _diffusers_loop(model_dir: Path, plans: list[Any]) -> tuple[float, dict[str, np.ndarray]]:
    """A warm plain-diffusers pipeline, one call per request: (seconds, pixels by prompt)."""
    import torch
    from diffusers import StableDiffusionPipeline

    from brushwork.runtime.samplers import scheduler_for

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def call(plan: Any) -> Any:
        pipe.scheduler = scheduler_for(plan.sampler).build(pipe.scheduler.config, plan.seeds)
        return pipe(prompt=plan.prompt, negative_prompt=plan.negative_prompt or None, width=plan.width, height=plan.height, num_inference_steps=plan.steps,
                    guidance_scale=plan.cfg, generator=[torch.Generator("cpu").manual_seed(plan.seeds[0])]).images[0]

    def loop() -> tuple[float, dict[str, np.ndarray]]:
        call(plans[0])  # warm-up, not timed
        started = time.perf_counter()
        images = {plan.prompt: np.asarray(call(plan)).astype(int) for plan in plans}
        return time.perf_counter() - started, images

    # On a thread of its own, as the server's engine runs: like for like (torch's CPU kernels
    # behave differently on the main thread than on others, most visibly with tiny models).
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(loop).result()


def compare(model_dir: Path, home: Path, clients: int = 4, steps: int = 8, size: int = 128) -> Throughput:
    from brushwork.config import ModelSource, Settings
    from brushwork.facade import Brushwork

    settings = Settings.load(home=home, models={"bench": ModelSource(source=str(model_dir), family="sd15")})
    bw = Brushwork(settings)
    prompts = [PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f", take {i}") for i in range(clients)]
    plans = [bw.plan(prompt, model="bench", style="general", seed=100 + i, steps=steps, width=size, height=size,
                     sampler="Euler a", cfg=7.0) for i, prompt in enumerate(prompts)]
    loop_s, reference = _diffusers_loop(model_dir, plans)
    ways: dict[str, tuple[float, dict[str, bytes], list[int]]] = {}
    for name, concurrent, batch in (("one_client", False, 1), ("concurrent", True, 1), ("batched", True, clients)):
        with tempfile.TemporaryDirectory() as tmp:
            ways[name] = asyncio.run(_serve(bw, plans, concurrent=concurrent, max_batch_size=batch, root=Path(tmp)))
    worst = 0
    for seconds_images_batches in ways.values():
        for plan in plans:
            served = _pixels(seconds_images_batches[1][plan.prompt])
            worst = max(worst, int(np.abs(served - reference[plan.prompt]).max()))
    return Throughput(clients, steps, f"{size}x{size}", loop_s, ways["one_client"][0], ways["concurrent"][0],
                      ways["batched"][0], ways["batched"][2], worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="diffusers SD 1.5 folder (default: tiny random model)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from brushwork.testing.factories import save_pipeline, tiny_sd15_pipeline

            model_dir = save_pipeline(tiny_sd15_pipeline(Path(tmp) / "tok"), Path(tmp) / "tiny-sd15")
        result = compare(model_dir, Path(tmp) / "home", args.clients, args.steps, args.size)
    report = {**asdict(result),
              "images_per_second": {name: round(result.images_per_second(getattr(result, f"{name}_s")), 3)
                                    for name in ("diffusers_loop", "one_client", "concurrent", "batched")},
              "batched_vs_one_client": round(result.batched_vs_one_client, 2),
              "concurrent_vs_one_client": round(result.concurrent_vs_one_client, 2),
              "batched_vs_diffusers_loop": round(result.batched_vs_diffusers_loop, 2)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
