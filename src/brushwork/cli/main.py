"""The `brushwork` command: one Typer app, one module per command group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from brushwork import __version__
from brushwork.cli import generate, listing
from brushwork.cli.common import state

app = typer.Typer(
    name="brushwork",
    help="Stable Diffusion images from a style and a prompt. Try: brushwork generate 'a red fox' --model demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"brushwork {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    config: Annotated[Optional[Path], typer.Option("--config", help="Settings TOML (default: $BRUSHWORK_CONFIG or ~/.config/brushwork/config.toml).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    state.config = config


app.command()(generate.generate)
app.command()(generate.replay)
app.command()(listing.styles)
app.command()(listing.models)
app.command()(listing.info)


def main() -> None:
    app()
