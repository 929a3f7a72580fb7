"""`brushwork serve`: the HTTP API under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from brushwork.cli.common import err_console, handle_errors

if TYPE_CHECKING:
    from brushwork.config import Settings


@handle_errors
def serve(
    ctx: typer.Context,
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (server.host; default 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (server.port; default 7860).")] = None,
    workers: Annotated[Optional[int], typer.Option(
        help="Engine worker processes (server.workers); 0 = one per GPU (one on a CPU-only machine).")] = None,
    in_process: Annotated[bool, typer.Option("--in-process", help="Run the engine in the server process (no worker processes).")] = False,
) -> None:
    """Serve the HTTP API: jobs with live progress, results, styles and models (docs at /docs)."""
    import uvicorn
    from pydantic import ValidationError

    from brushwork.api.app import create_app
    from brushwork.cli.common import quiet_libraries
    from brushwork.config import Settings
    from brushwork.plan import invalid_from_validation

    config = ctx.obj if isinstance(ctx.obj, Path) else None
    settings = Settings.load(config)
    changes: dict[str, Any] = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    if in_process:
        changes["worker_mode"] = "inprocess"
    if changes:
        try:
            server = type(settings.server).model_validate({**settings.server.model_dump(), **changes})
        except ValidationError as exc:
            raise invalid_from_validation(exc) from None
        settings = settings.model_copy(update={"server": server})
    quiet_libraries()
    err_console.print(f"brushwork API on http://{settings.server.host}:{settings.server.port} "
                      f"(docs: /docs; engine: {engine_summary(settings)})", highlight=False, markup=False)
    uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port, log_level="info",
                timeout_graceful_shutdown=int(settings.server.drain_timeout) or None)


def engine_summary(settings: Settings) -> str:
    """Where jobs run, e.g. "2 worker processes on cuda:0, cuda:1": the layout `default_clients` builds."""
    if settings.server.worker_mode == "inprocess":
        return f"in the server process on {settings.device}"
    from collections import Counter

    from brushwork.runtime.device import worker_layout

    layout = Counter(worker_layout(settings.device, settings.server.workers))
    where = ", ".join(device if count == 1 else f"{device} ({count})" for device, count in layout.items())
    total = sum(layout.values())
    return f"{total} worker process{'es' if total != 1 else ''} on {where}"
