"""The SQLite job store: queue order, atomic claims across threads and store objects, crash recovery,
idempotency, pagination, content-addressed lookup, purge, and clear errors for a bad file."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from brushwork.errors import BrushworkError
from brushwork.jobs.store import SCHEMA_VERSION, JobStore, SqliteJobStore
from brushwork.jobs.types import JobRecord, JobStatus


def job(*, priority: int = 0, created_at: float = 0.0, style: str = "photo", status: JobStatus = JobStatus.QUEUED,
        idempotency_key: str | None = None, cache_key: str = "", images: list[str] | None = None) -> JobRecord:
    return JobRecord(id=uuid.uuid4().hex, status=status, plan_json='{"prompt": "a cat"}', style=style,
                     priority=priority, created_at=created_at, idempotency_key=idempotency_key,
                     cache_key=cache_key, images=images or [])


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "jobs.sqlite"  # the parent folder does not exist yet


@pytest.fixture
def store(path: Path):
    with SqliteJobStore(path) as opened:
        yield opened


def drain(store: SqliteJobStore) -> list[str]:
    claimed = []
    while (record := store.claim_next()) is not None:
        claimed.append(record.id)
    return claimed


def test_is_a_job_store_with_wal_and_a_versioned_schema(store: SqliteJobStore, path: Path) -> None:
    assert isinstance(store, JobStore)
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"jobs_queue", "jobs_cache_key", "jobs_idempotency_key"} <= indexes
    finally:
        raw.close()


def test_claims_by_priority_then_oldest_first(store: SqliteJobStore) -> None:
    low_old = store.add(job(priority=0, created_at=100.0))
    high_new = store.add(job(priority=5, created_at=300.0))
    low_new = store.add(job(priority=0, created_at=200.0))
    high_old = store.add(job(priority=5, created_at=150.0))
    tie_first = store.add(job(priority=-1, created_at=50.0))
    tie_second = store.add(job(priority=-1, created_at=50.0))  # same timestamp: insertion order decides
    assert drain(store) == [high_old.id, high_new.id, low_old.id, low_new.id, tie_first.id, tie_second.id]
    assert store.claim_next() is None


def test_add_fills_created_at_and_returns_what_is_stored(store: SqliteJobStore) -> None:
    record = job()
    stored = store.add(record)
    assert stored.created_at > 1e9 and record.created_at == 0.0
    assert store.get(stored.id) == stored
    assert store.get("missing") is None
    with pytest.raises(BrushworkError, match="already exists"):
        store.add(record)


def test_claim_sets_running_and_counts_attempts_and_requeue_keeps_them(store: SqliteJobStore) -> None:
    first = store.add(job(created_at=1.0))
    second = store.add(job(created_at=2.0))
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == first.id
    assert (claimed.status, claimed.attempts) == (JobStatus.RUNNING, 1)
    assert claimed.started_at is not None and claimed.started_at > 1e9
    assert store.get(first.id) == claimed
    assert store.count(JobStatus.RUNNING) == 1 and store.count(JobStatus.QUEUED) == 1

    store.requeue(first.id, "worker crashed: exit code -9")
    requeued = store.get(first.id)
    assert requeued is not None
    assert (requeued.status, requeued.attempts, requeued.started_at) == (JobStatus.QUEUED, 1, None)
    assert requeued.error == "worker crashed: exit code -9"
    again = store.claim_next()  # kept its place in line ahead of the younger job
    assert again is not None and (again.id, again.attempts) == (first.id, 2)
    store.requeue(second.id)  # not running: nothing happens
    assert store.get(second.id).status is JobStatus.QUEUED  # type: ignore[union-attr]


def test_finish_records_the_outcome(store: SqliteJobStore) -> None:
    record = store.add(job())
    store.claim_next()
    store.requeue(record.id, "crashed once")
    store.claim_next()
    store.finish(record.id, JobStatus.SUCCEEDED, images=["img/ab.png", "img/cd.png"], timings={"generate": 1.5})
    done = store.get(record.id)
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED and done.error is None  # the retry note is cleared
    assert done.images == ["img/ab.png", "img/cd.png"] and done.timings == {"generate": 1.5}
    assert done.finished_at is not None and done.finished_at >= (done.started_at or 0)
    with pytest.raises(ValueError, match="finished status"):
        store.finish(record.id, JobStatus.RUNNING)
    with pytest.raises(BrushworkError, match="no job 'nope'"):
        store.finish("nope", JobStatus.FAILED, error="x")


def test_concurrent_claims_from_threads_and_two_stores_hand_out_each_job_once(path: Path) -> None:
    first, second = SqliteJobStore(path), SqliteJobStore(path)
    try:
        ids = {first.add(job(priority=i % 3)).id for i in range(40)}
        barrier = threading.Barrier(8)

        def worker(store: SqliteJobStore) -> list[str]:
            barrier.wait(timeout=10)
            return drain(store)

        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(worker, first if i % 2 else second) for i in range(8)]
            claimed = [job_id for future in futures for job_id in future.result(timeout=30)]  # re-raises
        assert Counter(claimed).most_common(1)[0][1] == 1  # nobody got a job twice
        assert set(claimed) == ids
        assert second.count(JobStatus.RUNNING) == 40 and first.count(JobStatus.QUEUED) == 0
        assert all(record.attempts == 1 for record in first.list(limit=100))
    finally:
        first.close()
        second.close()


def test_two_store_objects_see_each_others_writes(path: Path) -> None:
    with SqliteJobStore(path) as writer, SqliteJobStore(path) as reader:
        record = writer.add(job(style="anime"))
        assert reader.get(record.id) == record
        assert reader.claim_next().id == record.id  # type: ignore[union-attr]
        assert writer.get(record.id).status is JobStatus.RUNNING  # type: ignore[union-attr]


def test_idempotency_key_returns_the_first_job(path: Path) -> None:
    with SqliteJobStore(path) as store, SqliteJobStore(path) as other:
        first = store.add(job(idempotency_key="req-1"))
        again = store.add(job(idempotency_key="req-1"))
        from_elsewhere = other.add(job(idempotency_key="req-1", priority=9))
        assert again == first and from_elsewhere == first
        assert store.add(job(idempotency_key="req-2")).id != first.id
        store.add(job())
        store.add(job())  # many jobs without a key are fine
        assert store.count(JobStatus.QUEUED) == 4


def test_recover_requeues_jobs_running_when_the_process_died(path: Path) -> None:
    crashed = SqliteJobStore(path)
    a, b, c = (crashed.add(job(created_at=float(t))) for t in (1, 2, 3))
    crashed.claim_next()
    crashed.claim_next()
    crashed.close()  # "the process died": never finished

    with SqliteJobStore(path) as restarted:
        assert sorted(restarted.recover()) == sorted([a.id, b.id])
        assert restarted.count(JobStatus.RUNNING) == 0 and restarted.count(JobStatus.QUEUED) == 3
        recovered = restarted.get(a.id)
        assert recovered is not None
        assert (recovered.status, recovered.attempts, recovered.started_at) == (JobStatus.QUEUED, 1, None)
        assert restarted.recover() == []
        assert [restarted.claim_next().attempts for _ in range(3)] == [2, 2, 1]  # type: ignore[union-attr]
        assert restarted.get(c.id).status is JobStatus.RUNNING  # type: ignore[union-attr]


def test_cancel_queued_only_cancels_queued_jobs(store: SqliteJobStore) -> None:
    running = store.add(job(created_at=1.0))
    queued = store.add(job(created_at=2.0))
    store.claim_next()
    assert store.cancel_queued(running.id) is False
    assert store.get(running.id).status is JobStatus.RUNNING  # type: ignore[union-attr]
    assert store.cancel_queued(queued.id) is True
    cancelled = store.get(queued.id)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED and cancelled.finished_at
    assert store.cancel_queued(queued.id) is False  # already cancelled
    assert store.cancel_queued("unknown") is False
    assert store.claim_next() is None  # a cancelled job is never claimed


def test_queue_position_follows_claims(store: SqliteJobStore) -> None:
    a = store.add(job(priority=0, created_at=1.0))
    b = store.add(job(priority=0, created_at=2.0))
    c = store.add(job(priority=1, created_at=3.0))
    d = store.add(job(priority=0, created_at=2.0))  # ties with b: after it
    assert [store.queue_position(x.id) for x in (c, a, b, d)] == [0, 1, 2, 3]
    store.claim_next()  # c
    assert store.queue_position(c.id) is None
    assert [store.queue_position(x.id) for x in (a, b, d)] == [0, 1, 2]
    urgent = store.add(job(priority=10))
    assert store.queue_position(urgent.id) == 0 and store.queue_position(d.id) == 3
    store.cancel_queued(a.id)
    assert store.queue_position(a.id) is None and store.queue_position(b.id) == 1
    assert store.queue_position("unknown") is None


def test_list_filters_and_paginates_newest_first(store: SqliteJobStore) -> None:
    records = [store.add(job(created_at=float(t), style="anime" if t % 2 else "photo")) for t in range(1, 8)]
    store.finish(records[0].id, JobStatus.FAILED, error="boom")
    newest_first = [r.id for r in reversed(records)]
    assert [r.id for r in store.list()] == newest_first
    assert [r.id for r in store.list(style="anime")] == [r.id for r in reversed(records) if r.style == "anime"]
    assert [r.id for r in store.list(status=JobStatus.FAILED)] == [records[0].id]
    assert [r.id for r in store.list(status=JobStatus.QUEUED, style="anime")] == [
        records[6].id, records[4].id, records[2].id]

    pages, before = [], None
    while page := store.list(limit=3, before=before):
        pages.append([r.id for r in page])
        before = page[-1].created_at
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    assert store.list(limit=0) == []
    assert store.list(style="x'; DROP TABLE jobs; --") == []  # values are bound, never spliced
    assert store.count(JobStatus.QUEUED) == 6


def test_find_succeeded_returns_the_newest_success_for_a_cache_key(store: SqliteJobStore) -> None:
    older = store.add(job(cache_key="plan-1", created_at=1.0))
    newer = store.add(job(cache_key="plan-1", created_at=2.0))
    failed = store.add(job(cache_key="plan-1", created_at=3.0))
    store.add(job(cache_key="plan-2"))  # queued, not succeeded
    assert store.find_succeeded("plan-1") is None
    store.finish(older.id, JobStatus.SUCCEEDED, images=["a.png"])
    store.finish(newer.id, JobStatus.SUCCEEDED, images=["b.png"])
    store.finish(failed.id, JobStatus.FAILED, error="oom")
    found = store.find_succeeded("plan-1")
    assert found is not None and found.id == newer.id and found.images == ["b.png"]
    assert store.find_succeeded("plan-2") is None
    assert store.find_succeeded("") is None


def test_purge_removes_old_finished_jobs_and_returns_their_image_keys(store: SqliteJobStore) -> None:
    old_ok = store.add(job(created_at=1.0))
    old_failed = store.add(job(created_at=2.0))
    old_queued = store.add(job(created_at=3.0))
    recent = store.add(job(created_at=4.0))
    store.finish(old_ok.id, JobStatus.SUCCEEDED, images=["k/1.png", "k/2.png"])
    store.finish(old_failed.id, JobStatus.FAILED, error="boom")
    store.finish(recent.id, JobStatus.SUCCEEDED, images=["k/2.png", "k/3.png"])  # finished last
    cutoff = store.get(recent.id).finished_at  # type: ignore[union-attr]
    assert cutoff is not None

    # k/2.png is still used by the recent job (content-addressed: same image), so it stays in storage
    assert store.purge(older_than=cutoff) == ["k/1.png"]
    assert store.get(old_ok.id) is None and store.get(old_failed.id) is None
    assert store.get(old_queued.id) is not None and store.get(recent.id) is not None
    assert store.purge(older_than=cutoff) == []
    assert store.purge(older_than=cutoff + 3600) == ["k/2.png", "k/3.png"]
    assert [r.id for r in store.list()] == [old_queued.id]


def test_data_survives_close_and_reopen(path: Path) -> None:
    with SqliteJobStore(path) as store:
        record = store.add(job(style="o'neil \"quoted\"", cache_key="ck", idempotency_key="idem", priority=3))
        store.claim_next()
        store.finish(record.id, JobStatus.SUCCEEDED, images=["x.png"], timings={"total": 2.25, "decode": 0.5})
        saved = store.get(record.id)
        queued = store.add(job())
    with pytest.raises(BrushworkError, match="closed"):
        store.get(record.id)
    store.close()  # closing twice is harmless

    with SqliteJobStore(path) as reopened:
        assert reopened.get(record.id) == saved
        assert reopened.get(queued.id) == queued
        assert reopened.add(job(idempotency_key="idem")).id == record.id
        assert reopened.find_succeeded("ck") == saved


def test_a_garbage_file_gives_a_clear_one_line_error(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, just some text that someone left here\n" * 64)
    with pytest.raises(BrushworkError) as caught:
        SqliteJobStore(path)
    message = str(caught.value)
    assert message.startswith(f"job store {path}: ") and "\n" not in message
    assert "not a database" in message


def test_a_foreign_or_newer_database_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.sqlite"
    raw = sqlite3.connect(foreign)
    raw.execute("CREATE TABLE users (name TEXT)")
    raw.commit()
    raw.close()
    with pytest.raises(BrushworkError, match=r"job store .*other\.sqlite: not a brushwork job database"):
        SqliteJobStore(foreign)

    newer = tmp_path / "newer.sqlite"
    SqliteJobStore(newer).close()
    raw = sqlite3.connect(newer)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(BrushworkError, match="newer than this brushwork"):
        SqliteJobStore(newer)


def test_a_folder_in_the_way_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "jobs.sqlite").mkdir()
    with pytest.raises(BrushworkError, match=r"^job store .*jobs\.sqlite: "):
        SqliteJobStore(tmp_path / "jobs.sqlite")


def batched(key: str, images: int = 1, created_at: float = 0.0, priority: int = 0) -> JobRecord:
    record = job(created_at=created_at, priority=priority)
    record.batch_key, record.image_count = key, images
    return record


def test_claim_compatible_takes_same_key_jobs_in_queue_order_within_the_image_budget(store: SqliteJobStore) -> None:
    a1 = store.add(batched("k", 1, created_at=1.0))
    other = store.add(batched("other", 1, created_at=2.0))
    a2 = store.add(batched("k", 3, created_at=3.0))  # does not fit a budget of 2 after a1
    a3 = store.add(batched("k", 1, created_at=4.0))
    loner = store.add(batched("", 1, created_at=5.0))
    claimed = store.claim_compatible("k", 2)
    assert [r.id for r in claimed] == [a1.id, a3.id]
    assert all(r.status is JobStatus.RUNNING and r.attempts == 1 and r.started_at for r in claimed)
    assert store.claim_compatible("k", 2) == []  # a2 needs 3 images
    assert [r.id for r in store.claim_compatible("k", 3)] == [a2.id]
    assert store.claim_compatible("", 10) == [] and store.claim_compatible("other", 0) == []
    assert drain(store) == [other.id, loner.id]


def test_a_version_1_database_gains_the_batch_columns(path: Path) -> None:
    from brushwork.jobs.store import _MIGRATIONS

    path.parent.mkdir(parents=True)
    raw = sqlite3.connect(path)
    for statement in _MIGRATIONS[1]:
        raw.execute(statement)
    raw.execute("INSERT INTO jobs (id, status, plan_json, style, created_at) VALUES ('old', 'queued', '{}', 's', 1)")
    raw.commit()
    raw.close()
    with SqliteJobStore(path) as upgraded:
        old = upgraded.get("old")
        assert old is not None and old.batch_key == "" and old.image_count == 1 and old.notes == []
        assert upgraded.claim_compatible("", 4) == [] and upgraded.claim_next().id == "old"


def test_a_run_s_notes_are_kept_with_its_job(store: SqliteJobStore) -> None:
    record = store.add(job())
    store.finish(record.id, JobStatus.SUCCEEDED, images=["k"], notes=["decoded again in float32"])
    assert store.get(record.id).notes == ["decoded again in float32"]
    store.finish(record.id, JobStatus.SUCCEEDED)  # not given: kept
    assert store.get(record.id).notes == ["decoded again in float32"]


def test_drop_images_keeps_the_jobs_and_images_still_referenced(store: SqliteJobStore) -> None:
    old = store.add(job(created_at=1.0, status=JobStatus.SUCCEEDED, images=["a", "shared"]))
    newer = store.add(job(created_at=2.0, status=JobStatus.SUCCEEDED, images=["shared", "b"]))
    store.finish(old.id, JobStatus.SUCCEEDED)
    cutoff = store.get(old.id).finished_at + 1e-3
    time.sleep(0.002)
    store.finish(newer.id, JobStatus.SUCCEEDED)  # finished after the cutoff
    assert store.drop_images(older_than=cutoff) == ["a"]  # "shared" is still newer's
    assert store.get(old.id).images == [] and store.get(newer.id).images == ["shared", "b"]
    assert store.drop_images(older_than=cutoff) == []
