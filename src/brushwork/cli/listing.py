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
    long: Annotated[bool, typer.Option("--long", "-l", help="One block per style: description and source too.")] = False,
) -> None:
    """List styles: keywords that route to them, their types, model and whether it is installed."""
    api = load_api(ctx)
    registry, catalog = api.styles, api.catalog
    checkpoints = catalog.checkpoints()
    rows = []
    for spec in registry:
        try:
            model = spec.recipe("preview").model
        except Exception as exc:  # a style that cannot even preview is still listed
            model = f"(error: {exc})"
        entry = checkpoints.get(model)
        rows.append((spec, model, entry is not None and catalog.is_installed(entry)))
    if long:
        for spec, model, installed in rows:
            state = "installed" if installed else "[red]not installed[/red]"
            console.print(f"[bold]{spec.name}[/bold]  model {model} ({state})  from {spec.source}", highlight=False)
            console.print(f"  {spec.description}", highlight=False, markup=False)
            if spec.types:
                console.print("  types: " + ", ".join(f"{k} ({v})" if v else k for k, v in spec.types.items()),
                              highlight=False, markup=False)
            console.print("  keywords: " + (", ".join(spec.keywords) or "(none)"), highlight=False, markup=False)
    else:
        table = Table(title="styles (--style NAME, or --style auto to pick by keywords)")
        table.add_column("name", no_wrap=True)
        table.add_column("model", no_wrap=True)
        table.add_column("types")
        table.add_column("keywords", min_width=16)
        for spec, model, installed in rows:
            shown = model if installed else f"[red]{model}*[/red]"
            table.add_row(spec.name, shown, ", ".join(spec.types), ", ".join(spec.keywords))
        console.print(table)
    console.print("* model not installed: `brushwork models` says where its file goes; "
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
