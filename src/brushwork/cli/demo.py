"""`brushwork demo-files`: what the README's image-mode examples need, with no download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brushwork.cli.common import (
    console,
    err_console,
    handle_errors,
    load_api,
    quiet_libraries,
)


@handle_errors
def demo_files(
    ctx: typer.Context,
    inputs: Annotated[Path, typer.Option("--inputs", help="Folder for the example photo.png and mask.png.")] = Path("demo-inputs"),
) -> None:
    """Install a tiny ControlNet (demo-canny) and upscaler (demo-2x) for the demo model, plus example inputs."""
    from brushwork.testing.demo_files import install_demo_files

    quiet_libraries()
    api = load_api(ctx)
    with err_console.status("building the demo ControlNet and upscaler (random weights, a few MB)…"):
        written = install_demo_files(api.settings, inputs.expanduser())
    for path, new in written:
        console.print(f"{'wrote' if new else 'exists'} {path}", highlight=False, markup=False)
    err_console.print("note: like the demo model, these have random weights: they show the plumbing, not art",
                      highlight=False)
