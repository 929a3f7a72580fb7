"""Native API v1: jobs, events, images and the catalogs of styles, models, samplers and upscalers."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field

from brushwork.api.inputs import read_body, refuse_model_paths, request_from_body
from brushwork.api.redact import redact, redact_optional
from brushwork.contract.samplers import sampler_names
from brushwork.jobs.service import JobService
from brushwork.jobs.types import JobRecord, JobStatus
from brushwork.plan import GenerationRequest, Plan
from brushwork.storage.results import is_key

REQUEST_EXAMPLE = {"prompt": "a lighthouse at dusk", "model": "demo", "seed": 7, "steps": 20}
# The body is read by `read_body` (JSON or multipart); this documents both shapes in the OpenAPI schema.
BODY_DOC: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/GenerationRequest"}, "example": REQUEST_EXAMPLE},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "request": {"type": "string", "description": "the GenerationRequest as JSON"},
        "init_image": {"type": "string", "format": "binary"},
        "mask_image": {"type": "string", "format": "binary"},
        "control_image_1": {"type": "string", "format": "binary", "description": "image of controls[0]"},
    }}},
}}}


class JobView(BaseModel):
    """A job as the API shows it."""

    id: str
    status: JobStatus
    queue_position: int | None = None
    priority: int = 0
    attempts: int = 0
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    images: list[str] = []
    seeds: list[int] = []
    timings: dict[str, float] = {}
    notes: list[str] = Field(default=[], description="what the engine had to do differently, e.g. an fp32 "
                                                    "VAE retry after a float16 NaN decode")
    plan: Plan


class GenerateResult(BaseModel):
    """POST /v1/generate: the finished job with its images inline (base64 PNG) or as URLs."""

    job: JobView
    images: list[str]


class JobPage(BaseModel):
    jobs: list[JobView]
    next_before: float | None = None


def view(record: JobRecord, request: Request, service: JobService) -> JobView:
    plan = record.plan
    return JobView(
        id=record.id, status=record.status, priority=record.priority, attempts=record.attempts,
        queue_position=service.store.queue_position(record.id) if record.status is JobStatus.QUEUED else None,
        created_at=record.created_at, started_at=record.started_at, finished_at=record.finished_at,
        error=redact_optional(record.error, request.app.state.settings),  # no server paths in answers
        images=[str(request.url_for("image", key=key)) for key in record.images],
        seeds=list(plan.seeds), timings=record.timings, notes=[redact(note, request.app.state.settings) for note in record.notes], plan=plan,
    )


def job_or_404(service: JobService, job_id: str) -> JobRecord:
    record = service.store.get(job_id)
    if record is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r}")
    return record


def router(service_of: Any, api_of: Any, limit: Any = None) -> APIRouter:
    """The v1 routes; `service_of(request)` and `api_of(request)` give the app's JobService and Brushwork;
    `limit` is a dependency run before a job is created (rate limiting)."""
    routes = APIRouter(prefix="/v1", tags=["v1"])
    creates = [Depends(limit)] if limit is not None else []

    async def plan_of(request: Request) -> Plan:
        api = api_of(request)
        body = await read_body(request)
        parsed: GenerationRequest = await asyncio.to_thread(request_from_body, body, api)
        await asyncio.to_thread(refuse_model_paths, parsed, api)
        return await asyncio.to_thread(api.plan, parsed)  # hashing, demo build: off the event loop

    @routes.post("/jobs", status_code=202, response_model=JobView, openapi_extra=BODY_DOC, dependencies=creates)
    async def submit(request: Request,
                     idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
                     priority: Annotated[int, Query(ge=-100, le=100)] = 0) -> JobView:
        """Queue a generation; returns at once with the job id and its place in the queue."""
        service = service_of(request)
        record = await service.submit(await plan_of(request), priority=priority, idempotency_key=idempotency_key)
        return view(record, request, service)

    @routes.post("/generate", response_model=GenerateResult, openapi_extra=BODY_DOC, dependencies=creates,
                 responses={202: {"description": "not done within the timeout: `{detail, job}`; the job goes on "
                                                 "(follow it at the Location)"}})
    async def generate(request: Request,
                       response_format: Annotated[str, Query(pattern="^(b64_json|url)$")] = "b64_json",
                       timeout: Annotated[float | None, Query(gt=0, le=3600)] = None) -> GenerateResult | JSONResponse:
        """Queue a generation and wait for it (up to the timeout); images inline as base64 or as URLs."""
        service = service_of(request)
        record = await service.submit(await plan_of(request))
        limit = timeout or request.app.state.settings.server.generate_timeout
        try:
            async with asyncio.timeout(limit):
                async for _ in service.events(record.id):
                    pass
        except TimeoutError:  # not an error: the job goes on; 202 + where to follow it
            still = service.store.get(record.id) or record
            return JSONResponse(status_code=202, headers={"Location": f"/v1/jobs/{record.id}"}, content={
                "detail": f"job {record.id} is not done after {limit:g}s; follow it at /v1/jobs/{record.id}",
                "job": view(still, request, service).model_dump(mode="json")})
        done = service.store.get(record.id)
        assert done is not None
        if done.status is not JobStatus.SUCCEEDED:
            raise HTTPException(status_code=409 if done.status is JobStatus.CANCELLED else 500,
                                detail=f"job {done.id} {done.status.value}: "
                                       f"{redact_optional(done.error, request.app.state.settings) or ''}".strip())
        if response_format == "url":
            images = [str(request.url_for("image", key=key)) for key in done.images]
        else:
            blobs = await asyncio.to_thread(lambda: [service.results.read(key) for key in done.images])
            images = [base64.b64encode(blob).decode() for blob in blobs]
        return GenerateResult(job=view(done, request, service), images=images)

    @routes.get("/jobs/{job_id}", response_model=JobView)
    async def get_job(request: Request, job_id: str) -> JobView:
        service = service_of(request)
        return view(job_or_404(service, job_id), request, service)

    @routes.get("/jobs", response_model=JobPage)
    async def list_jobs(request: Request, status: JobStatus | None = None, style: str | None = None,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        before: Annotated[float | None, Query(ge=0)] = None) -> JobPage:
        """Job history, newest first; pass `next_before` back as `before` for the next page."""
        service = service_of(request)
        records = service.store.list(status=status, style=style, limit=limit, before=before)
        jobs = [view(r, request, service) for r in records]
        return JobPage(jobs=jobs, next_before=records[-1].created_at if len(records) == limit else None)

    @routes.delete("/jobs/{job_id}", response_model=JobView)
    async def cancel_job(request: Request, job_id: str) -> JobView:
        """Cancel a queued job, or stop a running one at its next step."""
        service = service_of(request)
        record = job_or_404(service, job_id)
        if record.status.finished:
            raise HTTPException(status_code=409, detail=f"job {job_id} is already {record.status.value}")
        record = service.cancel(job_id) or record
        return view(record, request, service)

    @routes.get("/jobs/{job_id}/events")
    async def job_events(request: Request, job_id: str,
                         last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
        """Server-Sent Events: queued, started, progress (step/total), done / failed / cancelled."""
        service = service_of(request)
        job_or_404(service, job_id)
        after = int(last_event_id) if last_event_id and re.fullmatch(r"[0-9]{1,12}", last_event_id) else 0
        settings = request.app.state.settings

        async def stream() -> AsyncIterator[bytes]:
            async for event in service.events(job_id, after=after):
                # engine texts may name server paths: redacted here, kept whole in the store and logs
                event = {**event, **{key: redact(event[key], settings) for key in ("error", "note")
                                     if isinstance(event.get(key), str)}}
                yield f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @routes.get("/images/{key}", name="image")
    async def image(request: Request, key: str) -> Response:
        """A stored result PNG; its key is content-addressed, so it never changes: cache it forever."""
        service = service_of(request)
        if not is_key(key) or not await asyncio.to_thread(service.results.has, key):
            raise HTTPException(status_code=404, detail=f"no image {key!r}")
        presigned = service.results.url(key)
        if presigned is not None:  # a bucket serves it directly
            return RedirectResponse(presigned, status_code=307)
        return Response(await asyncio.to_thread(service.results.read, key), media_type="image/png",
                        headers={"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'"{key[:-4]}"'})

    @routes.get("/styles")
    async def styles(request: Request) -> list[dict[str, Any]]:
        registry = api_of(request).styles
        return [{"name": s.name, "description": s.description, "keywords": list(s.keywords),
                 "types": dict(s.types)} for s in registry]

    @routes.get("/models")
    async def models(request: Request) -> list[dict[str, Any]]:
        catalog = api_of(request).catalog
        entries = await asyncio.to_thread(catalog.checkpoints)
        return [{"name": e.name, "family": e.family, "installed": catalog.is_installed(e),
                 "description": e.description} for e in entries.values()]

    @routes.get("/samplers")
    async def samplers() -> list[str]:
        return sampler_names()

    @routes.get("/upscalers")
    async def upscalers(request: Request) -> list[str]:
        return ["Latent", "Lanczos", *api_of(request).catalog.scan("upscaler")]

    @routes.get("/controlnets")
    async def controlnets(request: Request) -> list[str]:
        return list(api_of(request).catalog.scan("controlnet"))

    @routes.get("/loras")
    async def loras(request: Request) -> list[dict[str, Any]]:
        """Installed LoRAs by the name prompts use (`<lora:NAME:W>`) and the family their file is for."""
        from brushwork.resolve.loras import lora_family

        found = await asyncio.to_thread(api_of(request).catalog.scan, "lora")
        return [{"name": name, "family": await asyncio.to_thread(lora_family, path)} for name, path in found.items()]

    @routes.get("/embeddings")
    async def embeddings(request: Request) -> list[str]:
        """Installed textual-inversion embeddings: their names, as written in prompts."""
        return list(api_of(request).catalog.scan("embedding"))

    return routes
