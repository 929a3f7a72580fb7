"""The `brushwork` command: one Typer app, one module per command group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from brushwork import __version__
from brushwork.cli import demo, doctor, generate, listing, serve, upscale

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
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option("--config", help="Settings TOML (default: $BRUSHWORK_CONFIG or ~/.config/brushwork/config.toml).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    ctx.obj = config


app.command()(generate.generate)
app.command()(generate.replay)
app.command()(listing.styles)
app.command()(listing.models)
app.command()(listing.info)
app.command()(doctor.doctor)
app.command()(upscale.upscale)
app.command(name="demo-files")(demo.demo_files)
app.command()(serve.serve)


def command() -> Any:
    """The click command behind `app`, with flags shown without a `<bool>` value placeholder.

    Typer's help prints each option's type; for on/off flags (and --help) that
    reads as if they took a value. A flag's metavar "" leaves the column empty.
    """
    import typer.main

    root = typer.main.get_command(app)
    commands = [root, *getattr(root, "commands", {}).values()]
    limits = help_limits()
    for cmd in commands:
        help_option = cmd.get_help_option(typer.Context(cmd))
        for param in [*cmd.params, help_option]:
            if param is not None and getattr(param, "is_flag", False):
                param.metavar = ""
            for key, value in limits.items():  # "{max_steps}" in help → this deployment's limit
                if param is not None and getattr(param, "help", None) and f"{{{key}}}" in param.help:
                    param.help = param.help.replace(f"{{{key}}}", value)
    return root


def help_limits() -> dict[str, str]:
    """The limits that requests will be checked against, for help text (defaults if settings are broken;
    the command itself then reports the bad setting)."""
    from brushwork.config import Limits, Settings
    from brushwork.errors import BrushworkError

    try:
        limits = Settings.load().limits
    except BrushworkError:
        limits = Limits()
    return {key: f"{value:g}" for key, value in limits.model_dump().items()}


def usage_message(exc: Exception) -> str:
    """A usage error as `FIELD: message`, like every other error ('--strength abc' → `strength: expected a number`)."""
    message = exc.format_message()  # type: ignore[attr-defined]
    param = getattr(exc, "param", None)
    name = getattr(param, "name", None)
    if not name:
        return message
    if type(exc).__name__ == "MissingParameter":
        return f"{name}: is required ({message.rstrip('.')})"
    text = str(getattr(exc, "message", "") or message)
    if "valid integer" in text:
        return f"{name}: expected a whole number"
    if "valid number" in text:
        return f"{name}: expected a number"
    return f"{name}: {text[:1].lower() + text[1:]}"


def main() -> None:
    """Run the CLI; usage errors (bad option types, unknown options) become one line, exit 2."""
    from brushwork.cli.common import EXIT_BAD_INPUT, print_error

    try:
        code = command()(standalone_mode=False)
    except typer.TyperException as exc:  # typer's (vendored click) usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":  # typer has already printed the help
            code = 0
        else:
            print_error(usage_message(exc))
            code = getattr(exc, "exit_code", EXIT_BAD_INPUT)
    except typer.Abort:
        code = 1
    raise SystemExit(code if isinstance(code, int) else 0)
