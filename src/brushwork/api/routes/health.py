"""/healthz (alive), /readyz (a worker can take jobs) and /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse


def router(service_of: Any) -> APIRouter:
    routes = APIRouter(tags=["health"])

    @routes.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        service = service_of(request)
        if service.ready():
            return JSONResponse({"status": "ready"})
        reason = "draining" if not service.accepting else "no worker is up yet"
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    @routes.get("/metrics")
    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return routes
