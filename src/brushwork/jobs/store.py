"""The persistent job store: `JobStore` (the interface) and `SqliteJobStore` (the default).

Jobs survive a restart: they live in one SQLite file in WAL mode, so readers
never wait on the writer and a second process on the same file sees every
committed write. Every write is one `BEGIN IMMEDIATE` transaction, so two
callers (threads or processes) can never claim the same job.

Threading: one `sqlite3.Connection` per store, guarded by a lock; every method
takes the lock for its whole transaction, so a store object may be shared by
any number of threads (the job service calls it from `asyncio.to_thread`). Jobs
take seconds, store calls microseconds: serialising them inside one process
costs nothing, and cross-process safety comes from SQLite's own locking
(`BEGIN IMMEDIATE` + busy timeout), not from the lock.

`recover()` assumes one server process per file (worker processes never touch
the store): every RUNNING job at startup belongs to a process that died. A
store shared by several live replicas (PostgreSQL, later) needs leases instead.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from brushwork.errors import BrushworkError
from brushwork.jobs.types import JobRecord, JobStatus

SCHEMA_VERSION = 3

# version -> statements that bring the schema from version-1 to version (run in one transaction).
# PRAGMA cannot take parameters, hence the literal version numbers.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE jobs (
            id              TEXT PRIMARY KEY,
            status          TEXT NOT NULL,
            plan_json       TEXT NOT NULL,
            style           TEXT NOT NULL,
            priority        INTEGER NOT NULL DEFAULT 0,
            attempts        INTEGER NOT NULL DEFAULT 0,
            created_at      REAL NOT NULL,
            started_at      REAL,
            finished_at     REAL,
            error           TEXT,
            images          TEXT NOT NULL DEFAULT '[]',
            timings         TEXT NOT NULL DEFAULT '{}',
            idempotency_key TEXT,
            cache_key       TEXT NOT NULL DEFAULT ''
        )
        """,
        # the queue order (priority DESC, created_at, rowid) walks this index; rowid ends every index entry
        "CREATE INDEX jobs_queue ON jobs (status, priority DESC, created_at)",
        "CREATE INDEX jobs_cache_key ON jobs (cache_key)",
        "CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL",
        "PRAGMA user_version = 1",
    ),
    2: (  # dynamic batching: which queued jobs may run together, and how many images each makes
        "ALTER TABLE jobs ADD COLUMN batch_key TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN image_count INTEGER NOT NULL DEFAULT 1",
        "CREATE INDEX jobs_batch ON jobs (status, batch_key)",
        "PRAGMA user_version = 2",
    ),
    3: (  # what the engine had to do differently in the run (Result.notes)
        "ALTER TABLE jobs ADD COLUMN notes TEXT NOT NULL DEFAULT '[]'",
        "PRAGMA user_version = 3",
    ),
}

_COLUMNS = ("id", "status", "plan_json", "style", "priority", "attempts", "created_at", "started_at",
            "finished_at", "error", "images", "timings", "idempotency_key", "cache_key", "batch_key", "image_count",
            "notes")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM jobs"  # column names only, never values
_INSERT = f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
_QUEUE_ORDER = "priority DESC, created_at ASC, rowid ASC"
_FINISHED = tuple(status.value for status in JobStatus if status.finished)

QUEUED, RUNNING, SUCCEEDED, CANCELLED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value,
                                         JobStatus.SUCCEEDED.value, JobStatus.CANCELLED.value)


@runtime_checkable
class JobStore(Protocol):
    """Where jobs live between submission and cleanup. Timestamps are `time.time()` floats."""

    def add(self, record: JobRecord) -> JobRecord:
        """Store a new job (filling `created_at` when 0) and return it as stored; when
        `record.idempotency_key` was used before, store nothing and return that earlier job."""
        ...

    def get(self, job_id: str) -> JobRecord | None:
        ...

    def list(self, *, status: JobStatus | None = None, style: str | None = None, limit: int = 50,
             before: float | None = None) -> builtins.list[JobRecord]:
        """Newest first; `before` is a `created_at` cursor (exclusive) for the next page."""
        ...

    def claim_next(self) -> JobRecord | None:
        """Atomically take the highest-priority, then oldest, queued job: RUNNING, attempts += 1,
        started_at = now. No two callers ever get the same job."""
        ...

    def claim_compatible(self, batch_key: str, max_images: int) -> builtins.list[JobRecord]:
        """Atomically take queued jobs with this (non-empty) batch key, in queue order, while their
        images add up to at most `max_images`; each as `claim_next` would. [] when none fits."""
        ...

    def finish(self, job_id: str, status: JobStatus, *, error: str | None = None,
               images: builtins.list[str] | None = None, timings: dict[str, float] | None = None,
               notes: builtins.list[str] | None = None) -> None:
        """Record the outcome (a finished status); `error` replaces any earlier note, `images` /
        `timings` / `notes` replace the stored ones when given."""
        ...

    def requeue(self, job_id: str, error: str | None = None) -> None:
        """RUNNING -> QUEUED (its worker crashed; retry), keeping `attempts` and its place in line."""
        ...

    def cancel_queued(self, job_id: str) -> bool:
        """QUEUED -> CANCELLED; False when the job was not queued (unknown, running or finished)."""
        ...

    def recover(self) -> builtins.list[str]:
        """At startup: every RUNNING job (its process died) -> QUEUED; returns their ids."""
        ...

    def queue_position(self, job_id: str) -> int | None:
        """How many queued jobs run before this one (0 = next); None when it is not queued."""
        ...

    def count(self, status: JobStatus) -> int:
        ...

    def find_succeeded(self, cache_key: str) -> JobRecord | None:
        """The newest succeeded job with this Plan cache key (content-addressed reuse)."""
        ...

    def drop_images(self, *, older_than: float) -> builtins.list[str]:
        """Forget the images of jobs finished before `older_than` (the jobs stay); return the keys
        that no job refers to any more, for storage cleanup."""
        ...

    def purge(self, *, older_than: float) -> builtins.list[str]:
        """Delete finished jobs finished before `older_than`; return the image keys that no
        remaining job refers to, for storage cleanup."""
        ...

    def close(self) -> None:
        ...


class SqliteJobStore(JobStore):
    """The job store in one SQLite file (WAL). Thread-safe: one connection, one lock (see module doc)."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BrushworkError(f"job store {self.path}: cannot create its folder: {exc}") from None
        conn: sqlite3.Connection | None = None
        try:
            # isolation_level=None: no implicit transactions, we BEGIN ourselves; timeout = busy_timeout
            conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")  # the first read of the file: garbage fails here
            conn.execute("PRAGMA synchronous = NORMAL")  # safe in WAL: a power cut loses at most the last commits
            self._migrate(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise BrushworkError(f"job store {self.path}: {_one_line(exc)}") from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # two processes opening a new file at once: one migrates
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise BrushworkError(f"job store {self.path}: schema version {version} is newer than this "
                                     f"brushwork understands ({SCHEMA_VERSION}); upgrade brushwork")
            if version == 0:
                tables = [row[0] for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
                if tables:
                    raise BrushworkError(f"job store {self.path}: not a brushwork job database "
                                         f"(it holds tables {', '.join(sorted(tables))})")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    # -- plumbing --------------------------------------------------------------------

    @contextmanager
    def _use(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; with `write`, inside one BEGIN IMMEDIATE transaction."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise BrushworkError(f"job store {self.path}: already closed")
            try:
                if write:
                    conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no lost claims, no upgrade deadlock
                yield conn
                if write:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise BrushworkError(f"job store {self.path}: {_one_line(exc)}") from exc
            except BaseException:
                _rollback(conn)
                raise

    def _row(self, conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
        row = conn.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _record(row)

    # -- the interface -----------------------------------------------------------------

    def add(self, record: JobRecord) -> JobRecord:
        stored = replace(record, created_at=record.created_at or time.time(),
                         images=builtins.list(record.images), timings=dict(record.timings))
        with self._use(write=True) as conn:
            if stored.idempotency_key is not None:
                row = conn.execute(f"{_SELECT} WHERE idempotency_key = ?", (stored.idempotency_key,)).fetchone()
                if row is not None:
                    return _record(row)
            try:
                conn.execute(_INSERT, _values(stored))
            except sqlite3.IntegrityError:
                raise BrushworkError(f"job store {self.path}: a job with id {stored.id!r} already exists") from None
        return stored

    def get(self, job_id: str) -> JobRecord | None:
        with self._use() as conn:
            return self._row(conn, job_id)

    def list(self, *, status: JobStatus | None = None, style: str | None = None, limit: int = 50,
             before: float | None = None) -> builtins.list[JobRecord]:
        if limit <= 0:
            return []
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(JobStatus(status).value)
        if style is not None:
            where.append("style = ?")
            params.append(style)
        if before is not None:
            where.append("created_at < ?")
            params.append(before)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        params.append(int(limit))
        with self._use() as conn:
            return [_record(row) for row in conn.execute(sql, params)]

    def claim_next(self) -> JobRecord | None:
        with self._use(write=True) as conn:
            row = conn.execute(f"SELECT id FROM jobs WHERE status = ? ORDER BY {_QUEUE_ORDER} LIMIT 1",
                               (QUEUED,)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE jobs SET status = ?, attempts = attempts + 1, started_at = ?, finished_at = NULL "
                         "WHERE id = ?", (RUNNING, time.time(), row[0]))
            return self._row(conn, row[0])

    def claim_compatible(self, batch_key: str, max_images: int) -> builtins.list[JobRecord]:
        if not batch_key or max_images <= 0:
            return []
        with self._use(write=True) as conn:
            rows = conn.execute(f"SELECT id, image_count FROM jobs WHERE status = ? AND batch_key = ? "
                                f"ORDER BY {_QUEUE_ORDER}", (QUEUED, batch_key)).fetchall()
            chosen, room = [], max_images
            for job_id, count in rows:
                if count <= room:
                    chosen.append(job_id)
                    room -= count
                if room == 0:
                    break
            now = time.time()
            conn.executemany("UPDATE jobs SET status = ?, attempts = attempts + 1, started_at = ?, "
                             "finished_at = NULL WHERE id = ?", [(RUNNING, now, job_id) for job_id in chosen])
            return [record for job_id in chosen if (record := self._row(conn, job_id)) is not None]

    def finish(self, job_id: str, status: JobStatus, *, error: str | None = None,
               images: builtins.list[str] | None = None, timings: dict[str, float] | None = None,
               notes: builtins.list[str] | None = None) -> None:
        status = JobStatus(status)
        if not status.finished:
            raise ValueError(f"finish() needs a finished status, not {status.value!r}")
        with self._use(write=True) as conn:
            cursor = conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, error = ?, "
                "images = COALESCE(?, images), timings = COALESCE(?, timings), notes = COALESCE(?, notes) "
                "WHERE id = ?",
                (status.value, time.time(), error,
                 None if images is None else json.dumps(builtins.list(images)),
                 None if timings is None else json.dumps(dict(timings)),
                 None if notes is None else json.dumps(builtins.list(notes)), job_id))
            if cursor.rowcount == 0:
                raise BrushworkError(f"job store {self.path}: no job {job_id!r} to finish")

    def requeue(self, job_id: str, error: str | None = None) -> None:
        with self._use(write=True) as conn:
            conn.execute("UPDATE jobs SET status = ?, started_at = NULL, error = ? WHERE id = ? AND status = ?",
                         (QUEUED, error, job_id, RUNNING))

    def cancel_queued(self, job_id: str) -> bool:
        with self._use(write=True) as conn:
            cursor = conn.execute("UPDATE jobs SET status = ?, finished_at = ? WHERE id = ? AND status = ?",
                                  (CANCELLED, time.time(), job_id, QUEUED))
            return cursor.rowcount == 1

    def recover(self) -> builtins.list[str]:
        with self._use(write=True) as conn:
            ids = [row[0] for row in conn.execute(
                "SELECT id FROM jobs WHERE status = ? ORDER BY started_at, rowid", (RUNNING,))]
            conn.execute("UPDATE jobs SET status = ?, started_at = NULL WHERE status = ?", (QUEUED, RUNNING))
            return ids

    def queue_position(self, job_id: str) -> int | None:
        with self._use() as conn:
            row = conn.execute(
                "SELECT (SELECT COUNT(*) FROM jobs AS o WHERE o.status = me.status AND ("
                "  o.priority > me.priority OR (o.priority = me.priority AND ("
                "    o.created_at < me.created_at OR (o.created_at = me.created_at AND o.rowid < me.rowid)))))"
                " FROM jobs AS me WHERE me.id = ? AND me.status = ?", (job_id, QUEUED)).fetchone()
            return None if row is None else int(row[0])

    def count(self, status: JobStatus) -> int:
        with self._use() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM jobs WHERE status = ?",
                                    (JobStatus(status).value,)).fetchone()[0])

    def find_succeeded(self, cache_key: str) -> JobRecord | None:
        if not cache_key:
            return None
        with self._use() as conn:
            row = conn.execute(f"{_SELECT} WHERE cache_key = ? AND status = ? "
                               "ORDER BY finished_at DESC, rowid DESC LIMIT 1", (cache_key, SUCCEEDED)).fetchone()
            return None if row is None else _record(row)

    def drop_images(self, *, older_than: float) -> builtins.list[str]:
        marks = ", ".join("?" for _ in _FINISHED)
        with self._use(write=True) as conn:
            rows = conn.execute(f"SELECT id, images FROM jobs WHERE status IN ({marks}) AND finished_at < ? "
                                "AND images != '[]'", (*_FINISHED, older_than)).fetchall()
            if not rows:
                return []
            conn.executemany("UPDATE jobs SET images = '[]' WHERE id = ?", [(row[0],) for row in rows])
            return _unreferenced(conn, rows)

    def purge(self, *, older_than: float) -> builtins.list[str]:
        marks = ", ".join("?" for _ in _FINISHED)
        with self._use(write=True) as conn:
            doomed = conn.execute(f"SELECT id, images FROM jobs WHERE status IN ({marks}) AND finished_at < ?",
                                  (*_FINISHED, older_than)).fetchall()
            if not doomed:
                return []
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(row[0],) for row in doomed])
            return _unreferenced(conn, doomed)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteJobStore({str(self.path)!r})"


def _values(record: JobRecord) -> tuple[Any, ...]:
    return (record.id, JobStatus(record.status).value, record.plan_json, record.style, int(record.priority),
            int(record.attempts), float(record.created_at), record.started_at, record.finished_at, record.error,
            json.dumps(builtins.list(record.images)), json.dumps(dict(record.timings)), record.idempotency_key,
            record.cache_key, record.batch_key, int(record.image_count), json.dumps(builtins.list(record.notes)))


def _record(row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
    (job_id, status, plan_json, style, priority, attempts, created_at, started_at, finished_at, error,
     images, timings, idempotency_key, cache_key, batch_key, image_count, notes) = row
    return JobRecord(id=job_id, status=JobStatus(status), plan_json=plan_json, style=style, priority=priority,
                     attempts=attempts, created_at=created_at, started_at=started_at, finished_at=finished_at,
                     error=error, images=json.loads(images), timings=json.loads(timings),
                     idempotency_key=idempotency_key, cache_key=cache_key, batch_key=batch_key,
                     image_count=image_count, notes=json.loads(notes))


def _unreferenced(conn: sqlite3.Connection, rows: builtins.list[Any]) -> builtins.list[str]:
    """The image keys of `rows` (id, images JSON) that no job in the table refers to any more."""
    keys = dict.fromkeys(key for row in rows for key in json.loads(row[1]))  # ordered, unique
    # content-addressed keys: an identical Plan answered later points at the same images
    still_used = {key for (images,) in conn.execute("SELECT images FROM jobs WHERE images != '[]'")
                  for key in json.loads(images)}
    return [key for key in keys if key not in still_used]


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
