"""A real `brushwork serve` (uvicorn + a worker process) on loopback: crashes lose nothing.

Each test starts the server as a subprocess on a free 127.0.0.1 port and
talks HTTP to it; nothing leaves this machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

SLOW_JOB = {"prompt": "a fox", "model": "tiny-sd15", "width": 256, "height": 256, "steps": 40, "seed": 1,
            "sampler": "Euler"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, tiny_models: Any, home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (home.parent / f"server-{self.port}.log").open("wb")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "BRUSHWORK_HOME": str(home),
               "BRUSHWORK_MODELS_DIR": str(tiny_models.models_dir), "BRUSHWORK_SERVER__PORT": str(self.port),
               "BRUSHWORK_SERVER__DRAIN_TIMEOUT": "60"}  # a loaded CI machine is slow
        self.process = subprocess.Popen([sys.executable, "-m", "brushwork", "serve"], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, Path(self.log.name).read_text()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("server did not become ready")

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/v1/jobs", json=body, timeout=30)
        assert answer.status_code == 202, answer.text
        return answer.json()  # type: ignore[no-any-return]

    def job(self, job_id: str) -> dict[str, Any]:
        return httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=10).json()  # type: ignore[no-any-return]

    def wait(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish: {self.job(job_id)}")

    def first_progress(self, job_id: str) -> None:
        with httpx.stream("GET", f"{self.url}/v1/jobs/{job_id}/events", timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["type"] == "progress":
                    return
        raise AssertionError("no progress event")

    def worker_pid(self) -> int:
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        for pid in map(int, children.split()):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        raise AssertionError("no worker process")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.log.close()
        return code


@pytest.fixture
def servers(tiny_models, tmp_path):
    started: list[Server] = []

    def start(home: Path) -> Server:
        server = Server(tiny_models, home)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:  # its worker exits by itself when the pipe to the server closes
            server.process.kill()
            server.process.wait(timeout=30)


def test_a_killed_worker_is_restarted_and_its_job_retried(servers, tmp_path):
    server = servers(tmp_path / "home")
    job = server.post({**SLOW_JOB, "steps": 80})  # long enough to be mid-job when the kill lands, on fast CPUs too
    server.first_progress(job["id"])
    os.kill(server.worker_pid(), signal.SIGKILL)
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200  # the API keeps answering
    done = server.wait(job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert "brushwork_worker_restarts 1.0" in metrics and "brushwork_job_retries 1.0" in metrics


def test_a_killed_server_loses_nothing_and_sigterm_drains(servers, tmp_path):
    home = tmp_path / "home"
    first = servers(home)
    running = first.post(SLOW_JOB)
    queued = first.post({**SLOW_JOB, "seed": 2, "steps": 2, "width": 64, "height": 64})
    first.first_progress(running["id"])
    first.stop(signal.SIGKILL)  # no chance to clean up
    second = servers(home)
    assert second.wait(running["id"])["status"] == "succeeded"  # the running job ran again
    assert second.wait(queued["id"])["status"] == "succeeded"  # nothing queued was lost
    # SIGTERM: the running job may finish, then the server exits; jobs still queued stay for the next start
    slow = second.post({**SLOW_JOB, "seed": 3})
    later = second.post({**SLOW_JOB, "seed": 4, "steps": 39})  # not batchable with `slow`: it must stay queued
    second.first_progress(slow["id"])
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status still says why it stopped
    assert second.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in Path(second.log.name).read_text()
    third = servers(home)
    assert third.job(slow["id"])["status"] == "succeeded"
    assert third.wait(later["id"])["status"] == "succeeded"


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_curl_commands() -> list[str]:
    """The curl commands of the README's server section, continuation lines joined, comments dropped."""
    text = README.read_text()
    block = text.split("runs these commands against a real server -->\n```bash\n", 1)[1].split("```", 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current)
            current = ""
    return commands


def test_the_readme_curl_commands_run_on_the_demo_model(servers, tmp_path):
    server = servers(tmp_path / "home")
    workdir = tmp_path / "work"
    workdir.mkdir()
    subprocess.run([sys.executable, "-m", "brushwork", "demo-files"], cwd=workdir, check=True, capture_output=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "BRUSHWORK_HOME": str(tmp_path / "home")})
    commands = readme_curl_commands()
    assert len(commands) == 7 and all(command.startswith("curl ") for command in commands)

    def run(command: str, **ids: str) -> str:
        command = command.replace("localhost:7860", f"127.0.0.1:{server.port}")
        for name, value in ids.items():
            command = command.replace(name, value)
        done = subprocess.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        return done.stdout

    submit, events, poll, download, cancel, generate, upload = commands
    job = json.loads(run(submit))
    assert job["status"] in ("queued", "running", "succeeded")
    stream = run(events, JOB_ID=job["id"])
    kinds = [json.loads(line[6:])["type"] for line in stream.splitlines() if line.startswith("data: ")]
    assert kinds[-1] == "done" and "progress" in kinds
    polled = json.loads(run(poll, JOB_ID=job["id"]))
    assert polled["status"] == "succeeded" and polled["plan"]["model"]["name"] == "demo"
    key = polled["images"][0].rsplit("/", 1)[1]
    run(download, IMAGE_KEY=key)
    assert (workdir / "lighthouse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    longer = submit.replace('"seed": 7, "steps": 20', '"seed": 8, "steps": 150')  # the same request is a cache hit
    assert longer != submit
    second = json.loads(run(longer))
    json.loads(run(cancel, JOB_ID=second["id"]))  # the job as it is now: queued ones are cancelled at once
    assert server.wait(second["id"])["status"] == "cancelled"
    assert "already succeeded" in json.loads(run(cancel, JOB_ID=job["id"]))["detail"]  # 409: nothing to cancel
    answer = json.loads(run(generate))
    assert answer["job"]["status"] == "succeeded" and len(answer["images"]) == 1
    uploaded = json.loads(run(upload))
    assert server.wait(uploaded["id"])["plan"]["mode"] == "inpaint"
