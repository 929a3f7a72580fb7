"""Server paths stay on the server: errors in HTTP answers name files, never where they live."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from brushwork.api.redact import redact, redact_optional
from brushwork.config import Settings
from brushwork.errors import BrushworkError, ModelUnavailable
from brushwork.jobs.types import WorkerCrashed
from brushwork.testing.clients import FakeClient

FAST = {"model": "tiny-sd15", "steps": 2, "width": 64, "height": 64, "seed": 3}
ABSOLUTE = re.compile(r"(?<![\w.:/<>…~])(/[\w.-]|[A-Za-z]:\\)")  # an absolute path's start


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", output_dir=tmp_path / "out")


# -- the function ---------------------------------------------------------------------


def test_paths_under_brushwork_folders_keep_their_place_in_the_folder(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    models = settings.resolved_models_dir
    text = f"model 'x' at {models}/checkpoints/x.safetensors is not the one the plan names"
    assert redact(text, settings) == "model 'x' at <models>/checkpoints/x.safetensors is not the one the plan names"
    assert redact(f"wrote {settings.results_dir / 'ab.png'}", settings) == "wrote <results>/ab.png"
    assert redact(f"{settings.assets_dir / 'c.png'} is gone", settings) == "<assets>/c.png is gone"
    assert redact(f"saved to {tmp_path / 'out' / 'a.png'}", settings) == "saved to <outputs>/a.png"
    assert redact(f"cannot open {settings.jobs_db}", settings) == "cannot open <home>/jobs.sqlite3"
    assert redact(f"home is {settings.home}", settings) == "home is <home>"


def test_other_absolute_paths_keep_only_the_file_name(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    trace = 'File "/usr/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1532, in _call_impl'
    assert redact(trace, settings) == 'File "…/module.py", line 1532, in _call_impl'
    assert redact(r"C:\Users\bob\sd\x.ckpt is missing") == "…/x.ckpt is missing"
    assert redact(r"\\nas\models\y.safetensors is missing") == "…/y.safetensors is missing"
    assert redact("config file '/home/my user/brushwork.toml' is a folder") == "config file '…/brushwork.toml' is a folder"
    assert redact("libcudart (/opt/cuda/lib64/libcudart.so.12) not found") == "libcudart (…/libcudart.so.12) not found"
    assert redact("read file:///etc/passwd") == "read …/passwd"


def test_text_without_paths_is_unchanged() -> None:
    for text in ["CUDA out of memory. Tried to allocate 2.00 GiB", "steps 3/20 and/or cfg 7.5",
                 "see https://huggingface.co/org/repo/blob/main/x.safetensors", "~/models/x.safetensors",
                 "follow it at <models>/checkpoints/x.safetensors", ""]:
        assert redact(text) == text
    assert redact_optional(None) is None


# -- through the app ------------------------------------------------------------------


class FailingClient(FakeClient):
    """Crashes once (the retry note names a library path), then fails as a moved model file would."""

    def __init__(self, models: Path) -> None:
        super().__init__()
        self.models = models

    def run(self, plan: Any, on_event: Any, cancel: Any) -> Any:
        self.runs += 1
        if self.runs == 1:
            raise WorkerCrashed("worker died in /usr/lib/x86_64-linux-gnu/libcuda.so.1")
        raise ModelUnavailable(f"model 'tiny-sd15' at {self.models}/checkpoints/tiny.safetensors "
                               "is not the one the plan names (its hash changed)")


@pytest.fixture
def app(make_settings, tmp_path: Path):
    from brushwork.api.app import create_app

    settings = make_settings(home=tmp_path / "home")
    client = FailingClient(settings.resolved_models_dir)
    with TestClient(create_app(settings, clients=lambda s, api: [client])) as http:
        yield http


def _no_absolute_path(text: str) -> None:
    assert not ABSOLUTE.search(text), text


def test_a_failed_job_and_its_events_name_no_server_path(app: TestClient) -> None:
    job = app.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()
    events = app.get(f"/v1/jobs/{job['id']}/events").text
    failed = app.get(f"/v1/jobs/{job['id']}").json()
    assert failed["status"] == "failed"
    assert "<models>/checkpoints/tiny.safetensors" in failed["error"]
    _no_absolute_path(failed["error"])
    payloads = [json.loads(line[len("data: "):]) for line in events.splitlines() if line.startswith("data: ")]
    kinds = [event["type"] for event in payloads]
    assert "failed" in kinds and any("note" in event for event in payloads), kinds
    assert any("…/libcuda.so.1" in event.get("note", "") for event in payloads)
    _no_absolute_path(events)
    listed = app.get("/v1/jobs").json()["jobs"][0]["error"]
    _no_absolute_path(listed)


def test_the_store_keeps_the_whole_message_for_operators(app: TestClient) -> None:
    job = app.post("/v1/jobs", json={"prompt": "a fox", **FAST}).json()
    app.get(f"/v1/jobs/{job['id']}/events")
    stored = app.app.state.service.store.get(job["id"])  # type: ignore[attr-defined]
    assert str(app.app.state.settings.resolved_models_dir) in stored.error  # type: ignore[attr-defined]


def test_generate_names_no_server_path(app: TestClient) -> None:
    answer = app.post("/v1/generate", json={"prompt": "a fox", **FAST})
    assert answer.status_code == 500
    assert "<models>/checkpoints/tiny.safetensors" in answer.json()["detail"]
    _no_absolute_path(answer.text)


@pytest.mark.parametrize(("error", "status"), [(ModelUnavailable, 503), (BrushworkError, 500)])
def test_error_answers_name_no_server_path(app: TestClient, monkeypatch: pytest.MonkeyPatch,
                                           error: type[BrushworkError], status: int) -> None:
    settings = app.app.state.settings  # type: ignore[attr-defined]

    def plan(*args: Any, **kwargs: Any) -> Any:
        raise error(f"weights of 'tiny-sd15' at {settings.resolved_models_dir}/checkpoints/tiny.safetensors "
                    "cannot be read: /usr/lib/python3.11/site-packages/safetensors/torch.py said no")

    monkeypatch.setattr(app.app.state.api, "plan", plan)  # type: ignore[attr-defined]
    answer = app.post("/v1/jobs", json={"prompt": "a fox", **FAST})
    assert answer.status_code == status
    assert answer.json()["detail"] == ("weights of 'tiny-sd15' at <models>/checkpoints/tiny.safetensors "
                                       "cannot be read: …/torch.py said no")
    _no_absolute_path(answer.text)
