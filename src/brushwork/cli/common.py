"""What every CLI command shares: settings, error → exit-code mapping, progress bars."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from brushwork.errors import BrushworkError, InvalidRequest

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1

# emoji=False: user text such as "<hypernet:x:1>" must print as written, not with ":x:" turned into an emoji.
console = Console(emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)  # errors stay on one line

F = TypeVar("F", bound=Callable[..., Any])


def load_api(ctx: typer.Context) -> Any:
    """A Brushwork built from settings; `ctx.obj` holds `--config` given before the command."""
    from brushwork.config import Settings
    from brushwork.facade import Brushwork

    config = ctx.obj if isinstance(ctx.obj, Path) else None
    return Brushwork(Settings.load(config))


def resolve_output(output: str | None, default: Path) -> Path:
    """`-o` with `~` expanded; an empty `-o ""` is an error rather than the current folder."""
    if output is None:
        return default
    if not output.strip():
        raise InvalidRequest("output", "must not be empty (leave -o out for the default folder)")
    return Path(output).expanduser()


def ensure_output_dir(folder: Path) -> Path:
    """Create the output folder up front, so a bad `-o` fails before minutes of work."""
    import tempfile

    if folder.exists() and not folder.is_dir():
        raise InvalidRequest("output", f"{str(folder)!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidRequest("output", f"cannot create folder {str(folder)!r}: {exc.strerror}") from None
    try:  # really write: permission bits alone don't tell (root, read-only mounts, /sys)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        raise InvalidRequest("output", f"folder {str(folder)!r} is not writable") from None
    return folder


def quiet_libraries() -> None:
    """Hide diffusers/transformers' own bars and chatter; our Rich bar reports progress."""
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", module="torchsde")  # Brownian-tree float-rounding chatter


def print_error(message: str) -> None:
    """One red `error:` line; the message may quote files or names, so it is escaped (markup and control chars)."""
    from rich.markup import escape

    from brushwork.post.png_read import terminal_safe

    err_console.print(f"[red]error:[/red] {escape(terminal_safe(message))}", highlight=False)


def handle_errors(fn: F) -> F:
    """Turn brushwork errors into one red line and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidRequest as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except BrushworkError as exc:
            print_error(str(exc))
            raise typer.Exit(EXIT_FAILURE) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]cancelled[/yellow]", highlight=False)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if os.environ.get("BRUSHWORK_DEBUG"):
                raise
            print_error(f"{type(exc).__name__}: {exc} (set BRUSHWORK_DEBUG=1 for a traceback)")
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def step_progress(total: int, label: str) -> Iterator[Callable[[Any], None]]:
    """A Rich bar showing step n/N, it/s and ETA; yields the engine's progress callback."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(escape(label), total=total, rate="")  # names may come from files: no markup

        def on_step(event: Any) -> None:
            rate = event.step / event.elapsed if event.elapsed > 0 else 0.0
            progress.update(task, completed=event.step, rate=f"{rate:.2f} it/s")

        yield on_step
