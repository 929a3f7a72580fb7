"""JobService: the queue between the HTTP layer and the engine clients.

Jobs live in the store (they survive a restart); one loop per engine client
claims the next job, runs it in a thread (the event loop never waits on the
GPU) and publishes events that any number of listeners can follow and resume.
Dynamic batching: a claimed job waits up to `batch_wait` seconds for queued
jobs with the same `Plan.batch_key()` (same model, adapters, size, steps,
sampler, mode, cfg...) and runs with them as one batch of at most
`max_batch_size` images; each job still gets its own seeds' pixels.
A worker that crashes puts its job back in the queue until `max_attempts`.
An identical Plan already answered is served from the result store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from brushwork.contract.events import CancelToken
from brushwork.errors import BrushworkError, Cancelled
from brushwork.jobs.store import JobStore
from brushwork.jobs.types import EngineClient, JobRecord, JobStatus, WorkerCrashed
from brushwork.plan import Plan
from brushwork.storage.results import ResultStore, image_key

PURGE_EVERY_SECONDS = 3600.0
TERMINAL_EVENTS = ("done", "failed", "cancelled")
IDLE_POLL_SECONDS = 0.5  # how often an idle loop looks at the store (another replica may have queued work)


class QueueFull(BrushworkError):
    """More jobs are queued than the server accepts: try again later (HTTP 429)."""


@dataclass
class JobEvents:
    """The events of one job, kept so a listener can join late or resume by event id."""

    items: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


@dataclass
class ServiceStats:
    runs: int = 0
    cache_hits: int = 0
    retries: int = 0
    durations: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)  # jobs per engine run
    peak_memory: dict[int, int] = field(default_factory=dict)  # engine client index → device bytes, last run


class _AllCancelled(CancelToken):
    """The cancel flag of a batch: set once every job in it is cancelled (one job's cancel lets the rest go on)."""

    def __init__(self, tokens: list[CancelToken]) -> None:
        super().__init__()
        self.tokens = tokens

    def cancel(self) -> None:
        for token in self.tokens:
            token.cancel()

    @property
    def cancelled(self) -> bool:
        return all(token.cancelled for token in self.tokens)


class JobService:
    def __init__(self, store: JobStore, results: ResultStore, clients: list[EngineClient], *,
                 max_queued: int = 100, max_attempts: int = 3, history_seconds: float = 0.0,
                 image_seconds: float | None = None,
                 max_batch_size: int = 1, batch_wait: float = 0.0,
                 on_finished: Callable[[JobRecord], None] | None = None) -> None:
        self.store = store
        self.results = results
        self.clients = clients
        self.max_queued = max_queued
        self.max_attempts = max_attempts
        self.history_seconds = history_seconds
        self.image_seconds = image_seconds
        self.max_batch_size = max_batch_size
        self.batch_wait = batch_wait
        self.on_finished = on_finished
        self.stats = ServiceStats()
        self.accepting = True
        self._events: dict[str, JobEvents] = {}
        self._tokens: dict[str, CancelToken] = {}
        self._cancelled_by_user: set[str] = set()
        self._batch_of: dict[str, list[str]] = {}  # running job → every job of its batch
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # One long-lived thread per engine client for all its runs: torch keeps per-thread state (an
        # OpenMP pool, the current CUDA stream), and a pool hopping between threads would build more of it.
        self._runners = [ThreadPoolExecutor(1, thread_name_prefix=f"brushwork-engine-{i}")
                         for i in range(len(clients))]
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for job_id in await asyncio.to_thread(self.store.recover):
            self._publish(job_id, {"type": "queued", "note": "requeued after a restart"})
        self._tasks = [asyncio.create_task(self._work(client)) for client in self.clients]
        if self.history_seconds:
            self._tasks.append(asyncio.create_task(self._purge_periodically()))

    async def stop(self, drain_timeout: float = 0.0) -> None:
        """Stop taking jobs; let running ones finish within `drain_timeout`; queued ones stay in the store."""
        self.accepting = False
        self._wake.set()
        if drain_timeout > 0 and self._tokens:
            deadline = time.monotonic() + drain_timeout
            while self._tokens and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        for token in self._tokens.values():
            token.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for runner in self._runners:
            runner.shutdown(wait=False, cancel_futures=True)

    def ready(self) -> bool:
        return self.accepting and any(client.ready() for client in self.clients)

    async def drop_images(self, older_than: float) -> int:
        """Delete the stored images of jobs finished before `older_than` (the jobs stay, without images)."""
        keys = await asyncio.to_thread(self.store.drop_images, older_than=older_than)
        for key in keys:
            await asyncio.to_thread(self.results.delete, key)
        return len(keys)

    async def purge(self, older_than: float) -> int:
        """Forget jobs finished before `older_than` and delete the images no remaining job uses."""
        keys = await asyncio.to_thread(self.store.purge, older_than=older_than)
        for key in keys:
            await asyncio.to_thread(self.results.delete, key)
        for job_id in [j for j, e in self._events.items() if e.items and e.items[-1]["time"] < older_than]:
            self._events.pop(job_id, None)
        return len(keys)

    async def _purge_periodically(self) -> None:
        while self.accepting:
            with contextlib.suppress(BrushworkError):
                await self.purge(time.time() - self.history_seconds)
                if self.image_seconds is not None and self.image_seconds < self.history_seconds:
                    await self.drop_images(time.time() - self.image_seconds)
            await asyncio.sleep(PURGE_EVERY_SECONDS)

    # -- submitting ------------------------------------------------------------------

    async def submit(self, plan: Plan, *, priority: int = 0, idempotency_key: str | None = None) -> JobRecord:
        """Queue a checked Plan, or answer it from the result store when the same Plan was made before."""
        if not self.accepting:
            raise QueueFull("the server is shutting down; retry on another replica or later")
        keys = [image_key(plan.single(i).cache_key()) for i in range(plan.batch_size)]
        now = time.time()
        record = JobRecord(id=uuid.uuid4().hex, status=JobStatus.QUEUED, plan_json=plan.to_json(),
                           style=plan.style, priority=priority, created_at=now,
                           idempotency_key=idempotency_key, cache_key=plan.cache_key(),
                           batch_key=plan.batch_key(), image_count=plan.batch_size)
        cached = await asyncio.to_thread(lambda: all(self.results.has(key) for key in keys))
        if cached:  # same Plan answered before: no GPU work
            record.status, record.images, record.started_at, record.finished_at = JobStatus.SUCCEEDED, keys, now, now
            stored = await asyncio.to_thread(self.store.add, record)
            if stored.id == record.id:
                self.stats.cache_hits += 1
                self._publish(record.id, {"type": "done", "images": keys, "cached": True})
            return stored
        if await asyncio.to_thread(self.store.count, JobStatus.QUEUED) >= self.max_queued:
            raise QueueFull(f"{self.max_queued} jobs are already queued; retry later")
        stored = await asyncio.to_thread(self.store.add, record)
        if stored.id == record.id:
            position = await asyncio.to_thread(self.store.queue_position, record.id)
            self._publish(record.id, {"type": "queued", "position": position})
            self._wake.set()
        return stored

    def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel a queued job now, or ask a running one to stop at its next step."""
        if self.store.cancel_queued(job_id):
            self._publish(job_id, {"type": "cancelled"})
        elif job_id in self._tokens and job_id not in self._cancelled_by_user:
            self._cancelled_by_user.add(job_id)
            self._tokens[job_id].cancel()
            batch = self._batch_of.get(job_id, [job_id])
            if any(other not in self._cancelled_by_user for other in batch):
                # the rest of its batch goes on: this job is over now, its images will be dropped
                self.store.finish(job_id, JobStatus.CANCELLED)
                self._publish(job_id, {"type": "cancelled"})
        return self.store.get(job_id)

    # -- events ------------------------------------------------------------------------

    def _publish(self, job_id: str, event: dict[str, Any]) -> None:
        """Record an event (loop thread only) and wake listeners."""
        events = self._events.setdefault(job_id, JobEvents())
        events.items.append({**event, "id": len(events.items) + 1, "job": job_id, "time": time.time()})

        async def notify() -> None:
            async with events.changed:
                events.changed.notify_all()

        if self._loop is not None:
            self._loop.create_task(notify())

    def _publish_threadsafe(self, job_id: str, event: dict[str, Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._publish, job_id, event)

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Events of a job from id `after`+1 on, until it is finished; a finished job from before a
        restart yields one final event from the store."""
        events = self._events.setdefault(job_id, JobEvents())
        index = after
        while True:
            while index < len(events.items):
                event = events.items[index]
                index += 1
                yield event
                if event["type"] in TERMINAL_EVENTS:
                    return
            if events.items and events.items[-1]["type"] in TERMINAL_EVENTS:
                return  # resumed after the last event of a finished job: nothing more will come
            record = await asyncio.to_thread(self.store.get, job_id)
            if record is not None and record.status.finished and not events.items:
                if after == 0:
                    yield _final_event(record)
                return
            async with events.changed:
                if index < len(events.items):
                    continue  # published while we looked at the store: no wait, no lost wake-up
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(events.changed.wait(), timeout=IDLE_POLL_SECONDS)

    # -- running -----------------------------------------------------------------------

    async def _work(self, client: EngineClient) -> None:
        index = self.clients.index(client)
        while self.accepting:
            self._wake.clear()  # before looking: a job queued after the look still wakes us
            record = await asyncio.to_thread(self.store.claim_next)
            if record is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=IDLE_POLL_SECONDS)
                continue
            self._claimed(record, [record.id])
            batch = [record, *await self._companions(record)]
            failed = await self._run(client, index, batch)
            if failed is not None:
                # The batch failed (e.g. out of memory with its extra images): each job gets a run of its own.
                for member in batch:
                    if await self._still_running(member.id):
                        await self._run(client, index, [member], note=f"alone, after its batch failed: {failed}")

    async def _companions(self, first: JobRecord) -> list[JobRecord]:
        """Queued jobs that can share `first`'s run: claimed now, and for up to `batch_wait` seconds."""
        room = self.max_batch_size - first.image_count
        if not first.batch_key or room <= 0:
            return []
        found: list[JobRecord] = []
        members = self._batch_of[first.id]
        deadline = time.monotonic() + self.batch_wait
        while room > 0 and self.accepting:
            self._wake.clear()
            claimed = await asyncio.to_thread(self.store.claim_compatible, first.batch_key, room)
            for record in claimed:
                members.append(record.id)
                self._claimed(record, members)
            found += claimed
            room -= sum(record.image_count for record in claimed)
            left = deadline - time.monotonic()
            if room <= 0 or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=left)
        return found

    def _claimed(self, record: JobRecord, members: list[str]) -> None:
        """A claimed job can be cancelled from now on, also while it waits for companions."""
        self._tokens[record.id] = CancelToken()
        self._batch_of[record.id] = members  # shared by the whole batch, growing as it gathers

    async def _still_running(self, job_id: str) -> bool:
        record = await asyncio.to_thread(self.store.get, job_id)
        return record is not None and record.status is JobStatus.RUNNING

    async def _run(self, client: EngineClient, index: int, records: list[JobRecord],
                   note: str = "") -> str | None:
        """Run one job, or a batch of compatible jobs, on `client`; record every job's outcome.

        When a batch of several jobs fails with an error that is not a crash or
        a cancel, its jobs stay RUNNING and the error is returned: the caller
        runs each of them alone, so one job's failure is never another's.
        """
        for record in records:
            if record.id not in self._tokens:  # a single re-run after a failed batch
                self._claimed(record, [record.id])
        cancelled = [record for record in records if record.id in self._cancelled_by_user]
        for record in cancelled:  # cancelled while the batch gathered
            if await self._still_running(record.id):
                await asyncio.to_thread(self.store.finish, record.id, JobStatus.CANCELLED)
                self._publish(record.id, {"type": "cancelled"})
        everyone, records = records, [record for record in records if record.id not in self._cancelled_by_user]
        if not records:
            await self._forget(everyone)
            return None
        tokens = [self._tokens[record.id] for record in records]
        for record in records:
            started_event: dict[str, Any] = {"type": "started", "attempt": record.attempts}
            if len(records) > 1:
                started_event["batch"] = len(records)
            if note:
                started_event["note"] = note
            self._publish(record.id, started_event)
        self.stats.batch_sizes.append(len(records))
        started = time.perf_counter()
        batch_failed: str | None = None

        def emit(member: int, event: dict[str, Any]) -> None:  # from the client's thread
            if 0 <= member < len(records) and not tokens[member].cancelled:
                self._publish_threadsafe(records[member].id, event)

        try:
            plans = [record.plan for record in records]
            cancel = tokens[0] if len(tokens) == 1 else _AllCancelled(tokens)
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._runners[index], client.run_batch, plans, emit, cancel)
            for record, plan, output in zip(records, plans, outputs, strict=True):
                if record.id in self._cancelled_by_user:
                    continue  # finished as cancelled while the batch went on
                keys = await asyncio.to_thread(lambda p=plan, o=output: [
                    self.results.put(image_key(p.single(i).cache_key()), data) for i, data in enumerate(o.images)])
                await asyncio.to_thread(self.store.finish, record.id, JobStatus.SUCCEEDED, images=keys,
                                        timings=output.timings, notes=output.notes)
                self.stats.runs += 1
                self.stats.durations.append(time.perf_counter() - started)
                if output.peak_memory is not None:
                    self.stats.peak_memory[index] = output.peak_memory
                self._publish(record.id, {"type": "done", "images": keys, "timings": output.timings,
                                          "notes": output.notes})
        except Cancelled:
            for record in records:
                if record.id in self._cancelled_by_user or self.accepting:
                    if await self._still_running(record.id):
                        await asyncio.to_thread(self.store.finish, record.id, JobStatus.CANCELLED)
                        self._publish(record.id, {"type": "cancelled"})
                else:  # stopped by a shutdown that outlasted the drain: it runs again on the next start
                    await asyncio.to_thread(self.store.requeue, record.id, "interrupted by a shutdown")
                    self._publish(record.id, {"type": "queued", "note": "interrupted by a shutdown"})
        except WorkerCrashed as exc:
            for record in records:
                if record.attempts < self.max_attempts:
                    self.stats.retries += 1
                    await asyncio.to_thread(self.store.requeue, record.id, str(exc))
                    self._publish(record.id, {"type": "queued", "note": f"retrying: {exc}"})
                    self._wake.set()
                else:
                    await self._fail(record.id, f"{exc} (gave up after {record.attempts} attempts)")
        except Exception as exc:  # a bug must fail the job, never the loop
            if len(records) > 1:
                batch_failed = f"{type(exc).__name__}: {exc}"
            else:
                await self._fail(records[0].id, str(exc) if isinstance(exc, BrushworkError)
                                 else f"{type(exc).__name__}: {exc}")
        finally:
            for record in everyone:
                self._tokens.pop(record.id, None)
                self._batch_of.pop(record.id, None)
        await self._forget(everyone)
        return batch_failed

    async def _forget(self, records: list[JobRecord]) -> None:
        """A run is over: drop its jobs' cancel state and report the finished ones."""
        for record in records:
            self._tokens.pop(record.id, None)
            self._batch_of.pop(record.id, None)
            self._cancelled_by_user.discard(record.id)
            finished = await asyncio.to_thread(self.store.get, record.id)
            if finished is not None and finished.status.finished and self.on_finished is not None:
                self.on_finished(finished)

    async def _fail(self, job_id: str, reason: str) -> None:
        await asyncio.to_thread(self.store.finish, job_id, JobStatus.FAILED, error=reason)
        self._publish(job_id, {"type": "failed", "error": reason})


def _final_event(record: JobRecord) -> dict[str, Any]:
    kind = {JobStatus.SUCCEEDED: "done", JobStatus.FAILED: "failed", JobStatus.CANCELLED: "cancelled"}[record.status]
    event: dict[str, Any] = {"type": kind, "id": 1, "job": record.id, "time": record.finished_at}
    if record.status is JobStatus.SUCCEEDED:
        event["images"] = record.images
    if record.error:
        event["error"] = record.error
    return event
