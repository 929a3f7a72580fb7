"""Prometheus metrics of one app, in its own registry (no process-global state, tests stay independent)."""

from __future__ import annotations

from typing import Any

from brushwork.jobs.types import JobRecord, JobStatus


class Metrics:
    def __init__(self, service: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.queue_depth = Gauge("brushwork_queue_depth", "jobs waiting", registry=self.registry)
        self.queue_depth.set_function(lambda: service.store.count(JobStatus.QUEUED))
        self.running = Gauge("brushwork_jobs_running", "jobs running", registry=self.registry)
        self.running.set_function(lambda: service.store.count(JobStatus.RUNNING))
        self.finished = Counter("brushwork_jobs_finished", "finished jobs by status", ["status"],
                                registry=self.registry)
        self.seconds = Histogram("brushwork_generation_seconds", "time from start to finish of a job",
                                 buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=self.registry)
        self.cache_hits = Gauge("brushwork_result_cache_hits", "jobs answered from stored results",
                                registry=self.registry)
        self.cache_hits.set_function(lambda: service.stats.cache_hits)
        self.retries = Gauge("brushwork_job_retries", "jobs re-queued after a worker crash", registry=self.registry)
        self.retries.set_function(lambda: service.stats.retries)
        self.restarts = Gauge("brushwork_worker_restarts", "engine worker processes restarted",
                              registry=self.registry)
        self.restarts.set_function(lambda: sum(getattr(c, "restarts", 0) for c in service.clients))
        self.batched = Gauge("brushwork_batched_jobs", "jobs that ran in a batch with others",
                             registry=self.registry)
        self.batched.set_function(lambda: sum(size for size in service.stats.batch_sizes if size > 1))
        self.engine_runs = Gauge("brushwork_engine_runs", "engine runs (a batch of jobs is one run)",
                                 registry=self.registry)
        self.engine_runs.set_function(lambda: len(service.stats.batch_sizes))
        self.registry.register(_DeviceMemory(service))

    def job_finished(self, record: JobRecord) -> None:
        self.finished.labels(record.status.value).inc()
        if record.started_at is not None and record.finished_at is not None:
            self.seconds.observe(max(0.0, record.finished_at - record.started_at))


class _DeviceMemory:
    """`brushwork_device_memory_peak_bytes{worker}`: each worker's peak device memory in its last run
    (CUDA workers only; absent on CPU, where the OS's process metrics tell more)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("brushwork_device_memory_peak_bytes",
                                   "peak device memory allocated during the worker's last run", labels=["worker"])
        for index, peak in sorted(self.service.stats.peak_memory.items()):
            family.add_metric([str(index)], float(peak))
        yield family
