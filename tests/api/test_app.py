"""The native HTTP API over the job service, with the lifespan running (FastAPI's TestClient).

Engine clients here are the real in-process engine on the tiny models, or
small fakes where a test needs to hold a job running, crash, or count runs.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from brushwork.testing.clients import FakeClient
from brushwork.testing.images import picture

FAST = {"model": "tiny-sd15", "steps": 2, "width": 64, "height": 64, "seed": 3}


def wait_done(http: TestClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_job_runs_and_its_png_equals_the_python_api(serve, make_settings, tmp_path):
    from brushwork.facade import Brushwork

    http = serve()
    created = http.post("/v1/jobs", json={"prompt": "a red fox", **FAST})
    assert created.status_code == 202, created.text
    body = created.json()
    assert body["status"] in ("queued", "running", "succeeded") and body["plan"]["seeds"] == [3]
    job = wait_done(http, body["id"])
    assert job["status"] == "succeeded" and len(job["images"]) == 1
    png = http.get(job["images"][0])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert "immutable" in png.headers["cache-control"]
    served = Image.open(io.BytesIO(png.content))
    assert "brushwork-plan" in served.info
    direct = Brushwork(make_settings(home=tmp_path / "home")).generate("a red fox", **FAST)
    assert np.array_equal(np.asarray(served.convert("RGB")), np.asarray(direct.images[0]))


def test_events_stream_in_order_and_end_with_done(serve):
    http = serve()
    job = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "steps": 3}).json()
    with http.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line[6:]) for line in lines]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "done" and "started" in kinds
    steps = [e["step"] for e in events if e["type"] == "progress"]
    assert steps == sorted(steps) and steps[-1] == 3
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    with http.stream("GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(events[-2]["id"])}) as again:
        resumed = [json.loads(line[6:]) for line in again.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in resumed] == ["done"]


def test_generate_waits_and_returns_base64_or_urls(serve):
    http = serve()
    answer = http.post("/v1/generate", json={"prompt": "a fox", **FAST})
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert image.size == (64, 64)
    as_url = http.post("/v1/generate?response_format=url", json={"prompt": "a fox", **FAST}).json()
    assert as_url["images"][0].startswith("http") and as_url["job"]["status"] == "succeeded"


def test_loras_by_field_and_by_tag_are_the_same_job(serve):
    http = serve()
    by_field = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "loras": [{"name": "tinylora", "weight": 0.5}]})
    assert by_field.status_code in (200, 202), by_field.text
    job = wait_done(http, by_field.json()["id"])
    assert job["status"] == "succeeded" and job["plan"]["loras"][0]["name"] == "tinylora"
    by_tag = http.post("/v1/jobs", json={"prompt": "a fox <lora:tinylora:0.5>", **FAST}).json()
    assert by_tag["images"] == job["images"]  # the same Plan: answered from storage


def test_a_run_s_notes_reach_the_job_and_its_done_event(serve):
    note = "The float16 VAE decode gave NaN/inf values (a black image) for seed 3; decoded again in float32."
    http = serve(FakeClient(notes=[note]))
    job = wait_done(http, http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()["id"])
    assert job["status"] == "succeeded" and job["notes"] == [note]


def test_an_identical_request_is_answered_from_storage_without_running(serve):
    fake = FakeClient()
    http = serve(fake)
    first = wait_done(http, http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()["id"])
    second = http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()
    assert second["status"] == "succeeded" and second["images"] == first["images"] and fake.runs == 1
    other_seed = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "seed": 4}).json()
    assert wait_done(http, other_seed["id"])["status"] == "succeeded" and fake.runs == 2


def test_input_images_travel_as_base64(serve):
    buffer = io.BytesIO()
    picture().save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    http = serve(FakeClient())
    job = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "init_image": f"data:image/png;base64,{encoded}",
                                      "strength": 0.5}).json()
    assert job["plan"]["mode"] == "img2img" and len(job["plan"]["init"]["init_image"]["sha256"]) == 64


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"prompt": "a fox", **FAST, "steps": 0}, "steps", "must be between 1 and 150, got 0"),
    ({"prompt": "a fox", **FAST, "width": 500}, "width", "multiple of 8"),
    ({"prompt": "a fox", **FAST, "style": "nosuch"}, "style", "unknown style 'nosuch'"),
    ({"prompt": "a fox", **FAST, "colour": "red"}, "colour", "extra"),
    ({"prompt": "a fox", **FAST, "init_image": "%%%"}, "init_image", "not valid base64"),
    ({"prompt": "a fox", **FAST, "init_image": base64.b64encode(b"not an image").decode()}, "init_image", "not"),
    ({"prompt": "a fox", **FAST, "steps": "many"}, "steps", ""),
    ({"prompt": "a fox <lora:nosuch:0.5>", **FAST}, "lora", "unknown LoRA 'nosuch'; valid: demo-lora, tinylora"),
    ({"prompt": "a fox <lora:tinylora:abc>", **FAST}, "prompt", "the weight 'abc' is not a number"),
    ({"prompt": "a fox", **FAST, "loras": [{"name": "tinylora", "weight": 9}]}, "lora", "between -5 and 5"),
    ({"prompt": "a (fox", **FAST}, "prompt", "is never closed"),
    ({"prompt": "a fox", **FAST, "refiner": "nosuch"}, "refiner", "hands over from an SDXL base model; 'tiny-sd15' "
                                                                  "is an SD 1.5 model"),
])
def test_bad_requests_are_422_naming_the_field(serve, body, field, fragment):
    http = serve(FakeClient())
    answer = http.post("/v1/jobs", json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["detail"][0]
    assert error["loc"][-1] == field and fragment in error["msg"], error


def test_not_json_object_too_big_and_unknown_job(serve):
    http = serve(FakeClient(), max_body_bytes=2048)
    assert http.post("/v1/jobs", json=["a fox"]).status_code == 422
    assert http.post("/v1/jobs", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    huge = http.post("/v1/jobs", json={"prompt": "x" * 5000})
    assert huge.status_code == 413
    chunked = http.post("/v1/jobs", content=(b'{"prompt": "' + b"x" * 500 for _ in range(10)),
                        headers={"content-type": "application/json"})  # no Content-Length: counted as it arrives
    assert chunked.status_code == 413
    assert http.get("/v1/jobs/nope").status_code == 404
    assert http.delete("/v1/jobs/nope").status_code == 404
    assert http.get("/v1/images/../../etc/passwd").status_code == 404
    assert http.get("/v1/images/" + "0" * 64 + ".png").status_code == 404


def test_full_queue_is_429_and_cancel_works_queued_and_running(serve):
    hold = threading.Event()
    http = serve(FakeClient(hold=hold), max_queued=1, max_batch_size=1)  # "two" must stay queued
    running = http.post("/v1/jobs", json={"prompt": "one", **FAST}).json()
    deadline = time.monotonic() + 10
    while http.get(f"/v1/jobs/{running['id']}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    queued = http.post("/v1/jobs", json={"prompt": "two", **FAST}).json()
    assert queued["status"] == "queued" and queued["queue_position"] == 0
    full = http.post("/v1/jobs", json={"prompt": "three", **FAST})
    assert full.status_code == 429 and full.headers["retry-after"]
    assert http.delete(f"/v1/jobs/{queued['id']}").json()["status"] == "cancelled"
    assert http.delete(f"/v1/jobs/{queued['id']}").status_code == 409
    http.delete(f"/v1/jobs/{running['id']}")
    assert wait_done(http, running["id"])["status"] == "cancelled"


def test_idempotency_key_returns_the_same_job(serve):
    http = serve(FakeClient())
    first = http.post("/v1/jobs", json={"prompt": "a fox", **FAST}, headers={"Idempotency-Key": "abc"}).json()
    again = http.post("/v1/jobs", json={"prompt": "a fox", **FAST}, headers={"Idempotency-Key": "abc"}).json()
    assert again["id"] == first["id"]


def test_a_crashed_worker_job_is_retried(serve):
    fake = FakeClient(crash_first=True)
    http = serve(fake)
    job = wait_done(http, http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()["id"])
    assert job["status"] == "succeeded" and job["attempts"] == 2 and fake.runs == 2


def test_api_keys_health_readiness_metrics_and_listings(serve):
    http = serve(FakeClient(), api_keys=("s3cret",))
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200
    assert http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).status_code == 401
    wrong = http.get("/v1/samplers", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    assert "DPM++ 2M Karras" in http.get("/v1/samplers", headers=auth).json()
    assert "general" in {s["name"] for s in http.get("/v1/styles", headers=auth).json()}
    assert "tiny-sd15" in {m["name"] for m in http.get("/v1/models", headers=auth).json()}
    assert "tiny2x" in http.get("/v1/upscalers", headers=auth).json()
    loras = {entry["name"]: entry["family"] for entry in http.get("/v1/loras", headers=auth).json()}
    assert loras["tinylora-xl"] == "sdxl" and "demo-lora" in loras
    assert http.get("/v1/embeddings", headers=auth).json() == []
    job = http.post("/v1/jobs", json={"prompt": "a fox", **FAST}, headers=auth).json()
    wait_done_auth = time.monotonic() + 10
    while http.get(f"/v1/jobs/{job['id']}", headers=auth).json()["status"] != "succeeded":
        assert time.monotonic() < wait_done_auth
        time.sleep(0.02)
    metrics = http.get("/metrics").text
    assert "brushwork_queue_depth" in metrics and 'brushwork_jobs_finished_total{status="succeeded"} 1.0' in metrics
    history = http.get("/v1/jobs?status=succeeded", headers=auth).json()
    assert [j["id"] for j in history["jobs"]] == [job["id"]]


def test_multipart_upload_and_the_openapi_schema(serve):
    buffer = io.BytesIO()
    picture().save(buffer, format="PNG")
    http = serve(FakeClient())
    request = json.dumps({"prompt": "a fox", **FAST, "strength": 0.4, "controls": [{"model": "tinycanny"}]})
    answer = http.post("/v1/jobs", data={"request": request},
                       files={"init_image": ("photo.png", buffer.getvalue(), "image/png"),
                              "control_image_1": ("edges.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 202, answer.text
    plan = answer.json()["plan"]
    assert plan["mode"] == "img2img" and plan["controls"][0]["image"] == plan["init"]["init_image"]
    stray = http.post("/v1/jobs", data={"request": json.dumps({"prompt": "a fox", **FAST})},
                      files={"control_image_2": ("x.png", buffer.getvalue(), "image/png")})
    assert stray.status_code == 422 and stray.json()["detail"][0]["loc"] == ["control_image_2"]
    schema = http.get("/openapi.json").json()
    assert "GenerationRequest" in schema["components"]["schemas"]
    body = schema["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}


def test_rate_limit_per_caller_is_429_with_retry_after(serve):
    http = serve(FakeClient(), rate_limit=2)
    codes = [http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "seed": seed}).status_code for seed in range(3)]
    assert codes == [202, 202, 429]
    limited = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "seed": 9})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    other = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "seed": 9}, headers={"Authorization": "Bearer k2"})
    assert other.status_code == 202  # another caller has its own budget


def test_old_jobs_and_their_unshared_images_are_purged(serve):
    http = serve(FakeClient())
    job = wait_done(http, http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()["id"])
    service = http.app.state.service
    removed = http.portal.call(service.purge, time.time() + 1)  # on the app's own event loop
    assert removed == 1 and http.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert http.get(job["images"][0]).status_code == 404


def test_over_http_a_model_is_a_catalog_name_never_a_server_path(serve, tiny_models):
    http = serve(FakeClient())
    for model in ("/etc/passwd", str(tiny_models.sd15_folder), "../checkpoints/tiny-sd15"):
        answer = http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "model": model})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["model"]
        assert "tiny-sd15" in answer.json()["detail"][0]["valid"]
    text = http.post("/v1/jobs", content=json.dumps({"prompt": "a fox", **FAST}), headers={"content-type": "text/plain"})
    assert text.status_code == 415  # a "simple" cross-site form post cannot queue jobs


def test_generate_past_its_timeout_is_202_with_the_job_that_goes_on(serve):
    hold = threading.Event()
    http = serve(FakeClient(hold=hold))
    answer = http.post("/v1/generate?timeout=0.2", json={"prompt": "a fox", **FAST})
    assert answer.status_code == 202, answer.text
    job = answer.json()["job"]
    assert answer.headers["location"] == f"/v1/jobs/{job['id']}" and job["status"] in ("queued", "running")
    hold.set()
    assert wait_done(http, job["id"])["status"] == "succeeded"


def test_images_can_be_kept_shorter_than_their_jobs(serve):
    http = serve(FakeClient())
    job = wait_done(http, http.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()["id"])
    kept = wait_done(http, http.post("/v1/jobs", json={"prompt": "a fox", **FAST, "seed": 77}).json()["id"])
    service = http.app.state.service
    assert job["finished_at"] < kept["finished_at"]
    assert http.portal.call(service.drop_images, kept["finished_at"]) == 1  # strictly older ones only
    after = http.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "succeeded" and after["images"] == [] and after["plan"] == job["plan"]
    assert http.get(job["images"][0]).status_code == 404
    assert http.get(kept["images"][0]).status_code == 200  # finished later: kept
