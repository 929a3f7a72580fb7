"""`create_app(settings)`: the whole HTTP server, built declaratively in one factory.

The lifespan owns the job store, the engine clients (worker processes by
default) and the job service; nothing is created at import time. Routes only
talk to the service and to a `Brushwork` used for planning (resolving
requests), never to the engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from brushwork.api import errors
from brushwork.api.body_limit import BodyLimit
from brushwork.api.metrics import Metrics
from brushwork.api.routes import health, native
from brushwork.api.security import RateLimiter, require_key
from brushwork.config import Settings
from brushwork.contract.version import VERSION
from brushwork.facade import Brushwork
from brushwork.jobs.service import JobService
from brushwork.jobs.store import SqliteJobStore
from brushwork.jobs.types import EngineClient
from brushwork.storage.results import ResultStore

ClientFactory = Callable[[Settings, Brushwork], Sequence[EngineClient]]


def default_clients(settings: Settings, api: Brushwork) -> list[EngineClient]:
    """Worker processes, or the server's own process when configured.

    `server.workers` 0 = one worker per detected GPU (one on a CPU-only machine or a pinned device);
    N = N workers round-robin over those devices. Several workers on one GPU split its memory.
    GPUs are counted without creating a CUDA context here: only the workers touch the device.
    """
    from brushwork.jobs.clients import InProcessClient, WorkerClient
    from brushwork.runtime.device import worker_layout

    if settings.server.worker_mode == "inprocess":
        return [InProcessClient(settings, api.engine)]
    return [WorkerClient(settings, device=device)
            for device in worker_layout(settings.device, settings.server.workers)]


def document_request_schema(app: FastAPI) -> None:
    """Add GenerationRequest (and the groups it uses) to the OpenAPI components: the routes read their
    body themselves (JSON or multipart), so FastAPI would not list the contract model on its own."""
    from brushwork.plan import GenerationRequest

    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        request = GenerationRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in request.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["GenerationRequest"] = request
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def result_store(settings: Settings) -> Any:
    """The local results folder, or the configured S3 bucket (checked now: a wrong bucket fails at start)."""
    if settings.server.s3 is None:
        return ResultStore(settings.results_dir)
    from brushwork.storage.s3 import S3ResultStore

    store = S3ResultStore(settings.server.s3)
    store.check()
    return store


def create_app(settings: Settings, *, clients: ClientFactory = default_clients) -> FastAPI:
    api = Brushwork(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        results = await asyncio.to_thread(result_store, settings)
        store = SqliteJobStore(settings.jobs_db)
        engine_clients = list(clients(settings, api))
        service = JobService(store, results, engine_clients,
                             max_queued=settings.server.max_queued, max_attempts=settings.server.max_attempts,
                             history_seconds=settings.server.history_days * 86400,
                             image_seconds=None if settings.server.image_days is None
                             else settings.server.image_days * 86400,
                             max_batch_size=settings.server.max_batch_size, batch_wait=settings.server.batch_wait)
        app.state.metrics = Metrics(service)
        service.on_finished = app.state.metrics.job_finished
        app.state.service = service
        await service.start()
        try:
            yield
        finally:
            await service.stop(drain_timeout=settings.server.drain_timeout)
            for client in engine_clients:
                client.close()
            store.close()

    app = FastAPI(title="brushwork", version=VERSION, lifespan=lifespan,
                  description="Stable Diffusion jobs: styles, Plans, queue, live progress.")
    app.state.settings = settings
    app.state.api = api
    errors.install(app)
    if settings.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.server.cors_origins),
                           allow_methods=["*"], allow_headers=["*"])

    app.add_middleware(BodyLimit, limit=settings.server.max_body_bytes)

    def service_of(request: Request) -> JobService:
        return request.app.state.service  # type: ignore[no-any-return]

    def api_of(request: Request) -> Brushwork:
        return request.app.state.api  # type: ignore[no-any-return]

    document_request_schema(app)
    app.include_router(health.router(service_of))
    limiter = RateLimiter(settings.server.rate_limit)
    app.include_router(native.router(service_of, api_of, limiter),
                       dependencies=[Depends(require_key(settings.server.api_keys))])
    return app
