"""Dynamic batching in the job service: compatible queued jobs run as one engine call, each job
keeps its own pixels, one job's cancel or a failed batch never costs the others their result."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from brushwork.errors import BrushworkError
from brushwork.jobs.types import RunOutput
from brushwork.testing.clients import FakeClient
from test_app import wait_done

FAST = {"model": "tiny-sd15", "steps": 2, "width": 64, "height": 64, "seed": 3}


def wait_status(http: TestClient, job_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while http.get(f"/v1/jobs/{job_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status}"
        time.sleep(0.01)


def events(http: TestClient, job_id: str) -> list[dict[str, Any]]:
    import json

    with http.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        return [json.loads(line[6:]) for line in stream.iter_lines() if line.startswith("data: ")]


def test_compatible_queued_jobs_run_as_one_batch_and_others_alone(serve):
    hold = threading.Event()
    fake = FakeClient(hold=hold)
    http = serve(fake, max_batch_size=4, batch_wait=0.0)
    blocker = http.post("/v1/jobs", json={"prompt": "first", **FAST, "steps": 3}).json()
    wait_status(http, blocker["id"], "running")
    same = [http.post("/v1/jobs", json={"prompt": f"job {i}", **FAST, "seed": 10 + i}).json() for i in range(3)]
    two_images = http.post("/v1/jobs", json={"prompt": "pair", **FAST, "batch_size": 2}).json()
    other = http.post("/v1/jobs", json={"prompt": "other", **FAST, "cfg": 3.0}).json()
    hold.set()
    finished = [wait_done(http, job["id"]) for job in (blocker, *same, two_images, other)]
    assert [job["status"] for job in finished] == ["succeeded"] * 6
    # the 3 one-image jobs fill 3 of 4 places; the 2-image job does not fit and runs next, as does cfg 3.0
    assert fake.batches == [1, 3, 1, 1]
    started = [e for e in events(http, same[1]["id"]) if e["type"] == "started"]
    assert started[0]["batch"] == 3
    assert all(len(job["images"]) == len(job["plan"]["seeds"]) for job in finished)


def test_batch_wait_gathers_jobs_that_arrive_just_after(serve):
    fake = FakeClient()
    http = serve(fake, max_batch_size=8, batch_wait=1.0)
    first = http.post("/v1/jobs", json={"prompt": "a", **FAST}).json()
    second = http.post("/v1/jobs", json={"prompt": "b", **FAST, "seed": 9}).json()
    assert {wait_done(http, j["id"])["status"] for j in (first, second)} == {"succeeded"}
    assert fake.batches == [2]


def test_max_batch_size_one_turns_batching_off(serve):
    hold = threading.Event()
    fake = FakeClient(hold=hold)
    http = serve(fake, max_batch_size=1)
    jobs = [http.post("/v1/jobs", json={"prompt": f"p{i}", **FAST, "seed": i}).json() for i in range(3)]
    hold.set()
    assert {wait_done(http, j["id"])["status"] for j in jobs} == {"succeeded"}
    assert fake.batches == [1, 1, 1]


def test_cancelling_one_job_of_a_running_batch_keeps_the_others(serve):
    hold = threading.Event()
    fake = FakeClient(hold=hold)
    http = serve(fake, max_batch_size=4, batch_wait=2.0)
    a = http.post("/v1/jobs", json={"prompt": "a", **FAST}).json()
    b = http.post("/v1/jobs", json={"prompt": "b", **FAST, "seed": 5}).json()
    wait_status(http, b["id"], "running")
    cancelled = http.delete(f"/v1/jobs/{a['id']}").json()
    assert cancelled["status"] == "cancelled"  # at once, though its batch goes on
    hold.set()
    assert wait_done(http, b["id"])["status"] == "succeeded"
    a_done = wait_done(http, a["id"])
    assert a_done["status"] == "cancelled" and a_done["images"] == []
    assert [e["type"] for e in events(http, a["id"])][-1] == "cancelled"


def test_cancelling_every_job_of_a_batch_stops_it(serve):
    hold = threading.Event()
    http = serve(FakeClient(hold=hold), max_batch_size=4, batch_wait=2.0)
    jobs = [http.post("/v1/jobs", json={"prompt": p, **FAST, "seed": s}).json() for p, s in (("a", 1), ("b", 2))]
    wait_status(http, jobs[1]["id"], "running")
    for job in jobs:
        http.delete(f"/v1/jobs/{job['id']}")
    assert [wait_done(http, j["id"])["status"] for j in jobs] == ["cancelled", "cancelled"]


class FailsInBatches(FakeClient):
    """Runs one Plan at a time fine but fails any batch (as a GPU out of memory with the extra images would)."""

    def run_batch(self, plans, on_event, cancel):
        if len(plans) > 1:
            self.batches.append(len(plans))
            raise BrushworkError("CUDA out of memory (simulated)")
        return super().run_batch(plans, on_event, cancel)


def test_a_failed_batch_runs_each_job_alone(serve):
    fake = FailsInBatches()
    http = serve(fake, max_batch_size=4, batch_wait=1.0)
    jobs = [http.post("/v1/jobs", json={"prompt": p, **FAST, "seed": s}).json() for p, s in (("a", 1), ("b", 2))]
    assert [wait_done(http, j["id"])["status"] for j in jobs] == ["succeeded", "succeeded"]
    assert fake.batches == [2, 1, 1]
    notes = [e.get("note", "") for e in events(http, jobs[0]["id"]) if e["type"] == "started"]
    assert "out of memory" in notes[-1]


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_batched_jobs_on_the_engine_give_the_pixels_of_single_runs(serve, make_settings, tmp_path):
    from brushwork.facade import Brushwork
    from brushwork.jobs.clients import InProcessClient

    class Recording(InProcessClient):
        batches: list[int] = []

        def run_batch(self, plans, on_event, cancel) -> list[RunOutput]:
            self.batches.append(len(plans))
            return super().run_batch(plans, on_event, cancel)

    http = serve(lambda settings, api: [Recording(settings, api.engine)], max_batch_size=4, batch_wait=2.0)
    bodies = [{"prompt": "a red fox", **FAST, "seed": 1}, {"prompt": "a blue whale", **FAST, "seed": 2}]
    jobs = [http.post("/v1/jobs", json=body).json() for body in bodies]
    done = [wait_done(http, job["id"]) for job in jobs]
    assert Recording.batches == [2]
    alone = Brushwork(make_settings(home=tmp_path / "alone"))
    for body, job in zip(bodies, done, strict=True):
        served = pixels(http.get(job["images"][0]).content)
        reference = np.asarray(alone.generate(**body).images[0]).astype(int)
        diff = np.abs(served - reference)
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99


class ReportsMemory(FakeClient):
    def run_batch(self, plans, on_event, cancel):
        outputs = super().run_batch(plans, on_event, cancel)
        for output in outputs:
            output.peak_memory = 123456789
        return outputs


def test_metrics_show_batches_and_device_memory(serve):
    http = serve(ReportsMemory(), max_batch_size=4, batch_wait=1.0)
    jobs = [http.post("/v1/jobs", json={"prompt": p, **FAST, "seed": s}).json() for p, s in (("a", 1), ("b", 2))]
    assert [wait_done(http, j["id"])["status"] for j in jobs] == ["succeeded", "succeeded"]
    metrics = http.get("/metrics").text
    assert 'brushwork_device_memory_peak_bytes{worker="0"} 1.23456789e+08' in metrics
    assert "brushwork_batched_jobs 2.0" in metrics and "brushwork_engine_runs 1.0" in metrics


def test_progress_events_carry_a_jpeg_preview_every_nth_step(serve):
    import base64

    from brushwork.jobs.clients import InProcessClient

    http = serve(lambda settings, api: [InProcessClient(settings, api.engine)], preview_every=2)
    job = http.post("/v1/jobs", json={"prompt": "a red fox", **FAST, "steps": 5}).json()
    progress = [e for e in events(http, job["id"]) if e["type"] == "progress"]
    assert [e["step"] for e in progress] == [1, 2, 3, 4, 5]
    assert [e["step"] for e in progress if "preview" in e] == [2, 4]
    preview = Image.open(io.BytesIO(base64.b64decode(progress[1]["preview"])))
    assert preview.format == "JPEG" and preview.size == (8, 8)  # latent size of a 64x64 image
