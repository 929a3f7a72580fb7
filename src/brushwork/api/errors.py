"""Errors as HTTP answers: the user's mistakes are 4xx with the field named, never a 500.

422 `{"detail": [{"loc": [field], "msg": ..., "type": ...}]}` (FastAPI's own
shape, with the CLI's messages); 404 lists the valid names; 429 says when to
retry; runtime failures of a model are 503 with the reason. 503 and 500
texts come from the engine, so local paths in them are redacted (`api.redact`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from brushwork.api.redact import redact
from brushwork.errors import BrushworkError, InvalidRequest, ModelUnavailable, NotFound
from brushwork.jobs.service import QueueFull

RETRY_AFTER_SECONDS = "5"


def detail(field: str, message: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"detail": [{"loc": [field], "msg": message, "type": kind, **extra}]}


def install(app: FastAPI) -> None:
    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        # an unknown style/model in a request body is still a bad request: 422; a path lookup raises HTTPException
        return JSONResponse(detail(exc.field, str(exc.message), "not_found", valid=exc.valid), status_code=422)

    @app.exception_handler(InvalidRequest)
    async def invalid(request: Request, exc: InvalidRequest) -> JSONResponse:
        return JSONResponse(detail(exc.field, exc.message, "invalid_request"), status_code=422)

    @app.exception_handler(QueueFull)
    async def full(request: Request, exc: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": RETRY_AFTER_SECONDS})

    @app.exception_handler(ModelUnavailable)
    async def unavailable(request: Request, exc: ModelUnavailable) -> JSONResponse:
        return JSONResponse({"detail": redact(str(exc), request.app.state.settings)}, status_code=503)

    @app.exception_handler(BrushworkError)
    async def failure(request: Request, exc: BrushworkError) -> JSONResponse:
        return JSONResponse({"detail": redact(str(exc), request.app.state.settings)}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def shape(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)
