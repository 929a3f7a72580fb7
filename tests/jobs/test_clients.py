"""Engine clients: the in-process engine and the supervised worker process behind one interface.

The worker tests share one worker per module (spawning it and importing
torch costs seconds); they run in file order, and the last one closes it.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import threading

import numpy as np
import pytest
from PIL import Image

from brushwork.contract.events import CancelToken
from brushwork.errors import BrushworkError, Cancelled, InvalidRequest, NotFound
from brushwork.jobs.clients import InProcessClient, WorkerClient, settings_from_json
from brushwork.jobs.types import WorkerCrashed
from brushwork.plan import Plan

FAST = {"model": "tiny-sd15", "steps": 3, "width": 64, "height": 64, "seed": 3}
LONG_STEPS = 60  # long enough that a cancel or a kill after the first step lands mid-job


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def progress_steps(events: list[dict]) -> list[int]:
    assert all(e["type"] == "progress" and set(e) == {"type", "step", "total", "elapsed", "stage"} for e in events)
    return [e["step"] for e in events]


@pytest.fixture(scope="module")
def module_settings(tiny_models, tmp_path_factory):
    """conftest's `make_settings()` values, built once per module (the worker outlives a test)."""
    from brushwork.config import ModelSource, Settings

    root = tmp_path_factory.mktemp("clients")
    models = {"tiny-single": ModelSource(source=str(tiny_models.sd15_single), family="sd15",
                                         config=str(tiny_models.sd15_folder))}
    return Settings.load(home=tiny_models.home, models_dir=tiny_models.models_dir, styles_dir=root / "styles",
                         output_dir=root / "out", models=models)


@pytest.fixture(scope="module")
def local_api(module_settings):
    from brushwork.facade import Brushwork

    return Brushwork(module_settings)


@pytest.fixture(scope="module")
def worker(module_settings):
    client = WorkerClient(module_settings)
    yield client
    client.close()


@pytest.fixture(scope="module")
def reference(local_api):
    """The in-process run of the FAST Plan: (plan, PNG bytes, events)."""
    plan = local_api.plan("a red fox", **FAST)
    events: list[dict] = []
    output = InProcessClient(local_api.settings, local_api.engine).run(plan, events.append, CancelToken())
    return plan, output, events


# -- settings across the boundary ---------------------------------------------------------


def test_settings_round_trip_exactly_and_ignore_the_environment(make_settings, monkeypatch):
    settings = make_settings(device="cpu")
    data = settings.model_dump(mode="json")
    monkeypatch.setenv("BRUSHWORK_DEVICE", "cuda")
    monkeypatch.setenv("BRUSHWORK_MODELS__extra__source", "/nowhere")
    rebuilt = settings_from_json(data)
    assert rebuilt == settings and type(rebuilt) is type(settings) and "extra" not in rebuilt.models


def test_a_bad_device_is_refused_before_any_process_starts(make_settings):
    before = multiprocessing.active_children()
    with pytest.raises(InvalidRequest) as info:
        WorkerClient(make_settings(), device="gpu")
    assert info.value.field == "device" and "not a device" in info.value.message
    assert multiprocessing.active_children() == before


# -- in process ---------------------------------------------------------------------------


def test_in_process_png_is_what_generate_saves(reference, local_api, tmp_path):
    plan, output, events = reference
    assert len(output.images) == 1 and output.filtered == [False] and output.timings["total"] > 0
    direct = local_api.generate("a red fox", **FAST)
    assert np.array_equal(pixels(output.images[0]), np.asarray(direct.images[0]))
    image = Image.open(io.BytesIO(output.images[0]))
    assert Plan.from_json(image.info["brushwork-plan"]) == plan.single(0)
    assert "Seed: 3" in image.info["parameters"]
    saved = local_api.save(direct, tmp_path)  # what `brushwork generate` writes
    assert saved[0].read_bytes() == output.images[0]
    assert progress_steps(events) == [1, 2, 3] and {e["total"] for e in events} == {3}
    elapsed = [e["elapsed"] for e in events]
    assert elapsed == sorted(elapsed)


def test_in_process_cancel_after_the_first_event(local_api):
    client = InProcessClient(local_api.settings, local_api.engine)
    assert client.ready()
    plan = local_api.plan("a red fox", **{**FAST, "steps": 5})
    token, events = CancelToken(), []

    def on_event(event: dict) -> None:
        events.append(event)
        token.cancel()

    with pytest.raises(Cancelled):
        client.run(plan, on_event, token)
    assert progress_steps(events) == [1]


def test_a_failing_listener_does_not_fail_the_job(reference, local_api):
    plan, expected, _ = reference

    def broken(event: dict) -> None:
        raise RuntimeError("listener bug")

    output = InProcessClient(local_api.settings, local_api.engine).run(plan, broken, CancelToken())
    assert output.images == expected.images


# -- worker process -----------------------------------------------------------------------


def test_worker_gives_the_same_png_as_in_process(worker, reference):
    plan, expected, expected_events = reference
    events: list[dict] = []
    output = worker.run(plan, events.append, CancelToken())
    assert worker.ready() and worker.pid != os.getpid()
    assert np.array_equal(pixels(output.images[0]), pixels(expected.images[0]))
    assert output.images == expected.images  # metadata too: byte for byte
    assert output.filtered == [False] and set(output.timings) == set(expected.timings)
    assert progress_steps(events) == [1, 2, 3] and [e["total"] for e in events] == [3, 3, 3]
    assert [e["elapsed"] for e in events] == sorted(e["elapsed"] for e in events)
    assert len(expected_events) == len(events)


def test_worker_batch_images_come_in_seed_order_with_their_own_metadata(worker, local_api):
    plan = local_api.plan("a red fox", **{**FAST, "steps": 2, "batch_size": 2})
    output = worker.run(plan, lambda e: None, CancelToken())
    assert len(output.images) == 2 and output.filtered == [False, False]
    for index, data in enumerate(output.images):
        embedded = Plan.from_json(Image.open(io.BytesIO(data)).info["brushwork-plan"])
        assert embedded == plan.single(index) and embedded.seeds == (plan.seeds[index],)
    alone = worker.run(plan.single(1), lambda e: None, CancelToken())
    assert np.array_equal(pixels(alone.images[0]), pixels(output.images[1]))


def test_worker_runs_a_batch_of_plans_each_with_its_own_pixels_events_and_metadata(worker, local_api):
    plans = [local_api.plan("a red fox", **{**FAST, "steps": 2}),
             local_api.plan("a blue whale", **{**FAST, "steps": 2, "seed": 8, "batch_size": 2})]
    events: list[tuple[int, dict]] = []
    outputs = worker.run_batch(plans, lambda member, event: events.append((member, event)), CancelToken())
    assert [len(out.images) for out in outputs] == [1, 2]
    for member in (0, 1):
        assert progress_steps([e for m, e in events if m == member]) == [1, 2]
    for plan, output in zip(plans, outputs, strict=True):
        alone = local_api.engine.run(plan)
        for index, data in enumerate(output.images):
            assert Plan.from_json(Image.open(io.BytesIO(data)).info["brushwork-plan"]) == plan.single(index)
            diff = np.abs(pixels(data).astype(int) - np.asarray(alone.images[index]).astype(int))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99  # batched kernels: at most one 8-bit level


def test_worker_cancel_crosses_the_boundary_and_the_worker_stays(worker, local_api, reference):
    plan = local_api.plan("a red fox", **{**FAST, "steps": LONG_STEPS})
    pid, restarts = worker.pid, worker.restarts
    token, events = CancelToken(), []

    def on_event(event: dict) -> None:
        events.append(event)
        token.cancel()

    with pytest.raises(Cancelled, match=f"of {LONG_STEPS} steps"):
        worker.run(plan, on_event, token)
    assert 1 <= len(events) < LONG_STEPS
    # the same process takes the next job, with the flag cleared
    fast_plan, expected, _ = reference
    assert worker.run(fast_plan, lambda e: None, CancelToken()).images == expected.images
    assert (worker.pid, worker.restarts) == (pid, restarts) and worker.ready()


def test_worker_errors_come_back_as_brushwork_errors(worker, reference):
    plan, _, _ = reference
    too_long = plan.model_copy(update={"sampling": plan.sampling.model_copy(update={"steps": 10_000})})
    with pytest.raises(InvalidRequest) as info:
        worker.run(too_long, lambda e: None, CancelToken())
    assert info.value.field == "steps" and "10000" in info.value.message

    unknown = plan.model_copy(update={"model": plan.model.model_copy(update={"name": "no-such-model"})})
    with pytest.raises(NotFound) as missing:
        worker.run(unknown, lambda e: None, CancelToken())
    assert "no-such-model" in str(missing.value) and "tiny-sd15" in missing.value.valid
    assert worker.ready() and worker.restarts == 0


def test_a_killed_worker_is_reported_and_restarted(worker, local_api, reference):
    plan = local_api.plan("a red fox", **{**FAST, "steps": LONG_STEPS})
    pid, before = worker.pid, worker.restarts
    events: list[dict] = []

    def on_event(event: dict) -> None:
        if not events:
            os.kill(pid, signal.SIGKILL)
        events.append(event)

    with pytest.raises(WorkerCrashed, match=r"worker exited with code -9 \(SIGKILL\)"):
        worker.run(plan, on_event, CancelToken())
    assert worker.restarts == before + 1 == 1
    assert worker.pid not in (None, pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
    fast_plan, expected, _ = reference
    assert worker.run(fast_plan, lambda e: None, CancelToken()).images == expected.images
    assert worker.ready() and worker.restarts == 1


def test_close_cancels_the_running_job_and_leaves_no_child_process(worker, local_api, reference):
    plan = local_api.plan("a red fox", **{**FAST, "steps": LONG_STEPS})
    pid = worker.pid
    assert pid is not None
    first_step, closed = threading.Event(), threading.Event()
    outcome: list[BaseException] = []

    def on_event(event: dict) -> None:
        first_step.set()
        closed.wait(30)  # hold the reading thread until close() has stopped the worker

    def job() -> None:
        try:
            worker.run(plan, on_event, CancelToken())
        except BaseException as exc:  # noqa: BLE001 — the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    assert first_step.wait(60)
    worker.close()
    closed.set()
    thread.join(30)
    assert not thread.is_alive() and len(outcome) == 1 and isinstance(outcome[0], Cancelled)
    worker.close()  # idempotent
    assert not worker.ready() and worker.pid is None
    assert pid not in [child.pid for child in multiprocessing.active_children()]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped
    with pytest.raises(BrushworkError, match="closed"):
        worker.run(reference[0], lambda e: None, CancelToken())


def test_a_worker_that_cannot_start_says_why(module_settings, reference):
    """A device the machine lacks fails in the child, after the torch import: a clear error, no hang, no retry."""
    with WorkerClient(module_settings, device="cuda:63", start_timeout=60) as client:
        with pytest.raises(BrushworkError) as info:
            client.run(reference[0], lambda e: None, CancelToken())
        assert not isinstance(info.value, WorkerCrashed)
        assert str(info.value).startswith("the worker could not start: ")
        assert not client.ready() and client.pid is None
    assert not multiprocessing.active_children()
