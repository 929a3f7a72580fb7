"""`brushwork styles`, `brushwork models`, `brushwork info`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from brushwork.cli.common import console, err_console, handle_errors, load_api


def _yes_no(value: bool) -> str:
    return "[green]yes[/green]" if value else "[red]no[/red]"


@handle_errors
def styles(
    ctx: typer.Context,
    long: Annotated[bool, typer.Option("--long", "-l", help="Also show each style's description.")] = False,
) -> None:
    """List styles: keywords that route to them, their types, model and whether it is installed."""
    api = load_api(ctx)
    registry, catalog = api.styles, api.catalog
    checkpoints = catalog.checkpoints()
    table = Table(title="styles (use --style NAME, or let keywords pick with --style auto)")
    table.add_column("name", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("installed", no_wrap=True)
    table.add_column("types", overflow="fold")
    table.add_column("keywords", overflow="fold")
    if long:
        table.add_column("description", overflow="fold")
    for spec in registry:
        try:
            model = spec.recipe("preview").model
        except Exception as exc:  # a style that cannot even preview is still listed
            model = f"(error: {exc})"
        entry = checkpoints.get(model)
        installed = _yes_no(entry is not None and catalog.is_installed(entry))
        row = [spec.name, model, installed, ", ".join(spec.types), ", ".join(spec.keywords)]
        table.add_row(*row, *([spec.description] if long else []))
    console.print(table)
    console.print("Not installed? `brushwork models` says where each model's file goes; "
                  "any style runs on the built-in demo model with --model demo.", highlight=False)
    console.print(f"user styles folder: {api.settings.resolved_styles_dir}", highlight=False)
    for note in registry.notes:
        err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    for error in registry.errors:
        err_console.print(f"[yellow]skipped[/yellow] {error.source}: {error.message}", highlight=False)


@handle_errors
def models(ctx: typer.Context) -> None:
    """List checkpoints by catalog name, where they load from, and whether they are installed."""
    api = load_api(ctx)
    catalog = api.catalog
    table = Table(title=f"models (folder: {catalog.models_dir})")
    for column in ("name", "family", "installed", "source", "description"):
        table.add_column(column, overflow="fold")
    for name, entry in sorted(catalog.checkpoints().items()):
        installed = catalog.is_installed(entry)
        source = entry.source_label if installed or entry.demo else f"expected: {entry.expected_location}"
        table.add_row(name, entry.family or "auto", _yes_no(installed), source, entry.description)
    console.print(table)
    for kind in ("lora", "vae"):
        found = catalog.scan(kind)  # type: ignore[arg-type]
        names = ", ".join(found) if found else "(none)"
        console.print(f"{kind}s: {names}", highlight=False)


@handle_errors
def info(
    image: Annotated[Path, typer.Argument(help="A PNG with A1111 or brushwork metadata.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the embedded Plan as JSON.")] = False,
) -> None:
    """Show the generation parameters embedded in an image."""
    from brushwork.errors import InvalidRequest
    from brushwork.post.metadata import PARAMETERS_KEY, PLAN_KEY, read_plan, read_text_chunks

    chunks = read_text_chunks(image)
    if as_json:
        console.print_json(read_plan(image).to_json())
        return
    if PARAMETERS_KEY not in chunks and PLAN_KEY not in chunks:
        raise InvalidRequest("image", f"{image.name} has no generation metadata")
    if PARAMETERS_KEY in chunks:
        console.print(chunks[PARAMETERS_KEY], highlight=False, markup=False, soft_wrap=True)
    if PLAN_KEY in chunks:
        plan = read_plan(image)
        console.print(f"\nbrushwork plan: style {plan.style}, model {plan.model.name} "
                      f"(sha256 {plan.model.sha256[:16]}…); `brushwork replay {image}` regenerates it",
                      highlight=False, soft_wrap=True)
