"""Jobs: the persistent queue, the engine behind a process boundary, and the service that joins them.

* `types` — JobRecord, JobStatus, RunOutput and the narrow `EngineClient` interface;
* `store` — the SQLite (WAL) job store behind the `JobStore` interface;
* `clients` — `InProcessClient` (Python API, tests) and `WorkerClient` (a supervised worker process);
* `service` — `JobService`: submit, cancel, worker loops, events, retries, backpressure.
"""
