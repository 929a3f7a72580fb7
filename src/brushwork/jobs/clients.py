"""Engine clients: run Plans in this process, or in a supervised worker process that owns the device.

Both return PNG bytes carrying brushwork's metadata (`post.metadata.png_info`),
byte for byte what `brushwork generate` saves, and report JSON-safe progress
events. Only JSON and raw image bytes cross the worker's pipe: every frame is
either a UTF-8 JSON array or, right after a `done` header, one PNG. Nothing is
unpickled from a message.

Worker protocol (one `multiprocessing.Pipe`, frames via `send_bytes`):

    parent → child   ["run", job, [plan_json, ...]]      run Plans sharing a batch key (JSON strings)
                     ["stop"]                            finish and exit
    child → parent   ["ready", null, {"pid", "device"}]  torch/diffusers imported, facade and engine built
                     ["failed", null, error]             could not start (then it exits)
                     ["event", job, {"member": i, "type": "progress", "step", "total", "elapsed", "stage",
                                     "preview"?: base64 JPEG}]
                     ["done", job, {"results": [{"images": n, "timings": {...}, "filtered": [...],
                                                 "peak_memory": bytes|null, "notes": [str]}, ...]}]
                                                         + the PNG frames of every result, in order
                     ["error", job, error]

    error = {"kind": "InvalidRequest"|"NotFound"|"ModelUnavailable"|"Cancelled"|"Other",
             "field": str|null, "message": str, "value"?: str, "valid"?: [str]}

Cancellation crosses as a shared-memory flag (one byte, one per worker
process) that the parent sets when the caller's `CancelToken` is cancelled and
clears before each job; the engine checks it between steps. It is a lock-free
`RawValue` rather than a `multiprocessing.Event`: an Event takes a lock on
every check, and a worker killed while holding it would hang the parent's
next `set()`.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from pydantic import ValidationError

from brushwork.config import Settings
from brushwork.contract.events import CancelToken, StepEvent
from brushwork.errors import (
    BrushworkError,
    Cancelled,
    InvalidRequest,
    ModelUnavailable,
    NotFound,
)
from brushwork.jobs.types import EventSink, MemberEventSink, RunOutput, WorkerCrashed
from brushwork.plan import Plan, Result

if TYPE_CHECKING:
    from brushwork.engine.engine import Engine

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a waiting run() looks at the caller's cancel token and the worker's health
CLOSE_TIMEOUT = 10.0  # how long close() lets a worker finish before terminating it
KILL_GRACE = 3.0  # how long after SIGTERM before SIGKILL


# -- shared helpers ----------------------------------------------------------------------


def progress_event(event: StepEvent) -> dict[str, Any]:
    """A StepEvent as the JSON-safe event clients report (a preview as base64 JPEG)."""
    out: dict[str, Any] = {"type": "progress", "step": event.step, "total": event.total, "elapsed": event.elapsed,
                           "stage": event.stage}
    if event.preview is not None:
        out["preview"] = base64.b64encode(event.preview).decode("ascii")
    return out


def png_bytes(result: Result) -> list[bytes]:
    """Each image of `result` as PNG bytes with its metadata, exactly as `LocalStorage.save` writes it."""
    from brushwork.post.metadata import png_info

    out = []
    for index, image in enumerate(result.images):
        filtered = index < len(result.filtered) and result.filtered[index]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=png_info(result.plan, index, filtered))
        out.append(buffer.getvalue())
    return out


def _contained(on_event: MemberEventSink) -> MemberEventSink:
    """A listener that fails must not fail (or desynchronise) the job."""

    def emit(member: int, event: dict[str, Any]) -> None:
        try:
            on_event(member, event)
        except Exception:
            log.exception("an event listener failed; the job goes on")

    return emit


def _only_member(on_event: EventSink) -> MemberEventSink:
    return lambda _member, event: on_event(event)


def run_output(result: Result) -> RunOutput:
    return RunOutput(images=png_bytes(result), timings=dict(result.timings), filtered=list(result.filtered),
                     peak_memory=result.peak_memory, notes=list(result.notes))


# -- in this process ------------------------------------------------------------------------


class InProcessClient:
    """Runs Plans on an engine in this process (Python API, tests, `worker_mode=inprocess`).

    Pass the engine a facade already owns (`Brushwork.engine`) to share its warm models.
    """

    restarts = 0

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        from brushwork.engine.engine import Engine

        self.settings = settings
        self.engine = engine if engine is not None else Engine(settings)

    def run(self, plan: Plan, on_event: EventSink, cancel: CancelToken) -> RunOutput:
        return self.run_batch([plan], _only_member(on_event), cancel)[0]

    def run_batch(self, plans: list[Plan], on_event: MemberEventSink, cancel: CancelToken) -> list[RunOutput]:
        emit = _contained(on_event)
        results = self.engine.run_batch(plans, on_progress=lambda i, e: emit(i, progress_event(e)), cancel=cancel,
                                        preview_every=self.settings.server.preview_every)
        return [run_output(result) for result in results]

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release: the engine may be shared with a facade serving other callers."""


# -- errors across the boundary ------------------------------------------------------------


def error_payload(exc: BaseException) -> dict[str, Any]:
    """An exception as the JSON the worker sends (kind, field, message)."""
    if isinstance(exc, NotFound):
        return {"kind": "NotFound", "field": exc.field, "message": exc.message, "value": str(exc.value),
                "valid": list(exc.valid)}
    if isinstance(exc, InvalidRequest):
        return {"kind": "InvalidRequest", "field": exc.field, "message": exc.message}
    if isinstance(exc, Cancelled):
        return {"kind": "Cancelled", "field": None, "message": str(exc)}
    if isinstance(exc, ModelUnavailable):
        return {"kind": "ModelUnavailable", "field": None, "message": str(exc)}
    if isinstance(exc, BrushworkError):
        return {"kind": "Other", "field": None, "message": str(exc)}
    return {"kind": "Other", "field": None, "message": f"{type(exc).__name__}: {exc}"}


def error_from_payload(payload: dict[str, Any]) -> BrushworkError:
    """The brushwork exception a worker's error payload describes (same type and message)."""
    kind, message = payload.get("kind"), str(payload.get("message", ""))
    field_name = str(payload.get("field") or "plan")
    if kind == "NotFound":
        exc = NotFound.__new__(NotFound)
        InvalidRequest.__init__(exc, field_name, message)
        exc.value = str(payload.get("value", ""))
        exc.valid = [str(v) for v in payload.get("valid", [])]
        return exc
    if kind == "InvalidRequest":
        return InvalidRequest(field_name, message)
    if kind == "Cancelled":
        return Cancelled(message)
    if kind == "ModelUnavailable":
        return ModelUnavailable(message)
    return BrushworkError(message)


# -- settings across the boundary ----------------------------------------------------------


class _ExactSettings(Settings):
    """Settings from explicit values only: a worker must not re-read env or TOML (they could add models)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, **others: Any) -> tuple[Any, ...]:
        return (init_settings,)


def settings_from_json(data: dict[str, Any]) -> Settings:
    """Rebuild `Settings` from `settings.model_dump(mode="json")`, equal to the original (validated, no env/TOML)."""
    exact = _ExactSettings(**data)
    values = {name: getattr(exact, name) for name in Settings.model_fields}
    return Settings.model_construct(_fields_set=exact.model_fields_set, **values)


# -- the worker process (child side) -------------------------------------------------------


class _SharedCancel(CancelToken):
    """A CancelToken over the shared flag the parent sets (`multiprocessing.RawValue("b")`)."""

    def __init__(self, flag: Any) -> None:  # no threading.Event of its own
        self._flag = flag

    def cancel(self) -> None:
        self._flag.value = 1

    def reset(self) -> None:
        self._flag.value = 0

    @property
    def cancelled(self) -> bool:
        return bool(self._flag.value)


def _send(conn: Any, message: list[Any]) -> None:
    conn.send_bytes(json.dumps(message).encode())


def _run_job(engine: Any, conn: Any, cancel: CancelToken, job: str, plan_jsons: list[Any]) -> None:
    try:
        # strict: a Plan from another process is checked where it enters
        plans = [Plan.from_json(text if isinstance(text, str) else "") for text in plan_jsons]
        for plan in plans:
            engine.check(plan)
        results = engine.run_batch(
            plans, on_progress=lambda i, e: _send(conn, ["event", job, {"member": i, **progress_event(e)}]),
            cancel=cancel, preview_every=engine.settings.server.preview_every)
        outputs = [run_output(result) for result in results]
    except (BrokenPipeError, ConnectionResetError):
        raise  # the parent has gone: nobody to answer
    except Exception as exc:  # noqa: BLE001 — every failure goes back to the caller as an error
        _send(conn, ["error", job, error_payload(exc)])
        return
    _send(conn, ["done", job, {"results": [
        {"images": len(out.images), "timings": {k: float(v) for k, v in out.timings.items()},
         "filtered": [bool(f) for f in out.filtered], "peak_memory": out.peak_memory, "notes": list(out.notes)} for out in outputs]}])
    for out in outputs:
        for data in out.images:
            conn.send_bytes(data)


def _worker_main(conn: Any, cancel_flag: Any, settings_data: dict[str, Any]) -> None:
    """Entry point of the worker process: build the engine, say ready, run jobs until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    try:
        try:
            import diffusers  # noqa: F401 — pay the imports now, not in the first job
            import torch  # noqa: F401

            from brushwork.engine.engine import Engine

            engine = Engine(settings_from_json(settings_data))
            _send(conn, ["ready", None, {"pid": os.getpid(), "device": str(engine.policy.device)}])
        except Exception as exc:  # noqa: BLE001 — a worker that cannot start says why
            _send(conn, ["failed", None, error_payload(exc)])
            return
        cancel = _SharedCancel(cancel_flag)
        while True:
            try:
                message = json.loads(conn.recv_bytes())
            except EOFError:
                return  # the parent has gone
            if not isinstance(message, list) or not message or message[0] == "stop":
                return
            if message[0] == "run" and len(message) == 3 and isinstance(message[2], list):
                _run_job(engine, conn, cancel, str(message[1]), message[2])
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return
    finally:
        conn.close()


# -- the worker process (parent side) ------------------------------------------------------


@dataclass
class _Worker:
    """One worker process and what the parent keeps about it."""

    process: Any
    conn: Any
    cancel: _SharedCancel  # over a RawValue shared with this process only
    started_at: float
    messages: queue.Queue[tuple[str, Any, Any, list[bytes]]] = field(default_factory=queue.Queue)
    started: threading.Event = field(default_factory=threading.Event)
    info: dict[str, Any] = field(default_factory=dict)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    stop_lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False
    exitcode: int | None = None
    reader: threading.Thread | None = None

    def send(self, message: list[Any]) -> None:
        with self.send_lock:
            _send(self.conn, message)

    def alive(self) -> bool:
        try:
            return not self.stopped and self.process.is_alive()
        except ValueError:  # stopped (and closed) by another thread meanwhile
            return False

    def read(self) -> None:
        """Reader thread: frames → `messages`, until EOF; then one ("exit", ...) message."""
        try:
            while True:
                message = json.loads(self.conn.recv_bytes())
                kind, job, payload = message[0], message[1], message[2]
                if kind == "ready":
                    self.info = dict(payload)
                    self.started.set()
                    continue
                images = []
                if kind == "done":
                    count = sum(int(result["images"]) for result in payload["results"])
                    images = [self.conn.recv_bytes() for _ in range(count)]
                self.messages.put((kind, job, payload, images))
        except (EOFError, OSError, ValueError, TypeError, IndexError, KeyError):
            pass
        finally:
            self.messages.put(("exit", None, None, []))


def _outputs(results: list[dict[str, Any]], images: list[bytes]) -> list[RunOutput]:
    """The `done` header's results with their PNG frames, in order."""
    outputs, offset = [], 0
    for result in results:
        count = int(result["images"])
        peak = result.get("peak_memory")
        notes = result.get("notes", [])
        outputs.append(RunOutput(images=images[offset:offset + count],
                                 timings={k: float(v) for k, v in result["timings"].items()},
                                 filtered=[bool(f) for f in result["filtered"]],
                                 peak_memory=int(peak) if isinstance(peak, int) else None,
                                 notes=[str(note) for note in notes] if isinstance(notes, list) else []))
        offset += count
    return outputs


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "worker stopped answering (still running; terminated)"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"worker exited with code {code} ({signal.Signals(-code).name})"
    return f"worker exited with code {code}"


class WorkerClient:
    """A supervised worker process that owns the device and keeps models warm across jobs.

    The process starts when the client is made (`ready()` turns True once it
    has imported torch/diffusers and built its engine); `run()` waits for it
    up to `start_timeout` seconds. One job at a time. If the process dies
    mid-job, `run()` raises `WorkerCrashed` and a new process is started
    (counted in `restarts`), so the next `run()` works.
    """

    def __init__(self, settings: Settings, *, device: str | None = None, start_timeout: float = 120) -> None:
        data = settings.model_dump(mode="json")
        if device is not None:
            data["device"] = device
        try:
            settings_from_json(data)  # a bad device is the caller's error, now, not a dead worker later
        except ValidationError as exc:
            raise InvalidRequest("device", str(exc.errors()[0].get("msg", exc))) from None
        self.settings = settings
        self.device = data["device"]
        self.start_timeout = start_timeout
        self.restarts = 0
        self._settings_data = data
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # one job at a time
        self._state = threading.Lock()  # guards replacing the worker against close()
        self._closed = False
        self._spawned = 0
        self._worker: _Worker | None = None
        self._replace()

    # -- lifecycle -------------------------------------------------------------------

    def _replace(self) -> _Worker:
        """Start a new worker process (the old one, if any, is already stopped)."""
        with self._state:
            if self._closed:
                raise BrushworkError("the worker client is closed")
            self._worker = self._spawn()
            return self._worker

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        flag = self._context.RawValue("b", 0)
        process = self._context.Process(target=_worker_main, args=(child_conn, flag, self._settings_data),
                                        name="brushwork-worker", daemon=True)
        process.start()
        child_conn.close()  # the child holds the only other end: its death is an EOF here
        worker = _Worker(process=process, conn=parent_conn, cancel=_SharedCancel(flag), started_at=time.monotonic())
        worker.reader = threading.Thread(target=worker.read, name=f"brushwork-worker-{process.pid}-reader",
                                         daemon=True)
        worker.reader.start()
        if self._spawned:
            self.restarts += 1
        self._spawned += 1
        return worker

    @staticmethod
    def _stop(worker: _Worker, timeout: float) -> int | None:
        """Ask a worker to stop, then terminate and kill it; returns its exit code. Idempotent."""
        with worker.stop_lock:
            if worker.stopped:
                return worker.exitcode
            worker.cancel.cancel()
            with contextlib.suppress(OSError, ValueError):
                worker.send(["stop"])
            worker.process.join(timeout)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(KILL_GRACE)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(KILL_GRACE)
            if worker.reader is not None:
                worker.reader.join(KILL_GRACE)
            worker.conn.close()
            worker.exitcode = worker.process.exitcode
            worker.stopped = True
            with contextlib.suppress(ValueError):
                worker.process.close()
            return worker.exitcode

    def close(self) -> None:
        """Stop the worker: a running job is cancelled; after `CLOSE_TIMEOUT` s it is terminated, then killed."""
        with self._state:
            self._closed = True
            worker, self._worker = self._worker, None
        if worker is not None:
            self._stop(worker, CLOSE_TIMEOUT)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The worker process's id (None when none is running)."""
        worker = self._worker
        if worker is None:
            return None
        try:
            return worker.process.pid
        except ValueError:  # closed meanwhile
            return None

    def ready(self) -> bool:
        worker = self._worker
        return not self._closed and worker is not None and worker.started.is_set() and worker.alive()

    # -- running -------------------------------------------------------------------

    def run(self, plan: Plan, on_event: EventSink, cancel: CancelToken) -> RunOutput:
        return self.run_batch([plan], _only_member(on_event), cancel)[0]

    def run_batch(self, plans: list[Plan], on_event: MemberEventSink, cancel: CancelToken) -> list[RunOutput]:
        with self._lock:
            if self._closed:
                raise BrushworkError("the worker client is closed")
            worker = self._live_worker()
            self._await_start(worker, cancel)
            job = uuid.uuid4().hex
            worker.cancel.reset()
            try:
                worker.send(["run", job, [plan.to_json() for plan in plans]])
            except OSError:
                self._crashed(worker, "before the job was sent")
            try:
                return self._follow(worker, job, _contained(on_event), cancel)
            except BaseException:
                worker.cancel.cancel()  # whatever stopped us waiting, the job need not go on
                raise

    def _live_worker(self) -> _Worker:
        worker = self._worker
        if worker is not None and (worker.alive() or not worker.started.is_set()):
            return worker  # alive, or still starting (its outcome arrives as a message)
        if worker is not None:  # died while idle
            self._worker = None
            code = self._stop(worker, 0)
            log.warning("%s while idle; starting a new one", _describe_exit(code))
        return self._replace()

    def _await_start(self, worker: _Worker, cancel: CancelToken) -> None:
        deadline = worker.started_at + self.start_timeout
        while not worker.started.is_set():
            if cancel.cancelled:
                raise Cancelled("cancelled before the job started (the worker was still starting)")
            try:
                kind, _, payload, _ = worker.messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if time.monotonic() > deadline:
                    self._worker = None
                    code = self._stop(worker, 0)
                    self._replace()
                    raise WorkerCrashed(f"worker did not start within {self.start_timeout:g} s "
                                        f"({_describe_exit(code)}); a new worker was started") from None
                continue
            if kind == "failed":
                self._worker = None
                self._stop(worker, KILL_GRACE)
                error = error_from_payload(payload)
                if type(error) is BrushworkError:  # a bare failure: say where it happened
                    error = BrushworkError(f"the worker could not start: {error}")
                raise error
            if kind == "exit":
                self._crashed(worker, "while starting")

    def _follow(self, worker: _Worker, job: str, emit: MemberEventSink, cancel: CancelToken) -> list[RunOutput]:
        forwarded = False
        while True:
            if not forwarded and cancel.cancelled:
                worker.cancel.cancel()
                forwarded = True
            try:
                kind, token, payload, images = worker.messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if not worker.alive() and worker.reader is not None:
                    worker.reader.join(1.0)  # its EOF (and anything sent before it) is about to arrive
                    if worker.reader.is_alive() and worker.messages.empty():
                        self._crashed(worker, "during a job")
                continue
            if kind == "exit":
                self._crashed(worker, "during a job")
            if token != job:
                continue  # from a job whose caller stopped waiting
            if kind == "event":
                member = payload.pop("member", 0)
                emit(member if isinstance(member, int) else 0, payload)
            elif kind == "done":
                return _outputs(payload["results"], images)
            elif kind == "error":
                raise error_from_payload(payload)

    def _crashed(self, worker: _Worker, when: str) -> None:
        """The worker died: clean it up, start a new one (unless closing), raise WorkerCrashed."""
        if self._worker is worker:
            self._worker = None
        code = self._stop(worker, KILL_GRACE)
        try:
            self._replace()
        except BrushworkError:
            raise WorkerCrashed(f"{_describe_exit(code)} {when}: the client was closed") from None
        raise WorkerCrashed(f"{_describe_exit(code)} {when}; a new worker was started "
                            f"(restart {self.restarts})")
