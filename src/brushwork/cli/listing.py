"""`brushwork styles`, `brushwork models`, `brushwork info`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from brushwork.cli.common import console, err_console, handle_errors, load_api
from brushwork.errors import InvalidRequest
from brushwork.models.catalog import KIND_DIRS as KIND_FOLDERS
from brushwork.post.png_read import terminal_safe

if TYPE_CHECKING:
    from brushwork.models.catalog import CatalogEntry, ModelCatalog


def _yes_no(value: bool) -> str:
    return "[green]yes[/green]" if value else "[red]no[/red]"


def _safe(text: object) -> str:
    """Text from outside (a file, a user style) made safe for a terminal and for Rich markup."""
    return escape(terminal_safe(str(text)))


def _one_line(text: object) -> str:
    return " ".join(terminal_safe(str(text)).split())


def _describe(exc: BaseException) -> str:
    from brushwork.errors import BrushworkError

    text = str(exc) if isinstance(exc, BrushworkError) else f"{type(exc).__name__}: {exc}"
    return _one_line(text)


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
    failures: list[str] = []
    for spec in registry:
        model: str | None
        try:
            model = spec.recipe("preview").model
        except Exception as exc:  # a style that cannot even preview is still listed; the reason goes below
            model = None
            failures.append(f"style {_one_line(spec.name)!r} cannot make a recipe: {_describe(exc)}")
        entry = checkpoints.get(model) if model is not None else None
        rows.append((spec, model, entry is not None and catalog.is_installed(entry)))
    if long:
        for spec, model, installed in rows:
            if model is None:
                shown = "[red](error)[/red]"
            else:
                shown = f"{_safe(model)} ({'installed' if installed else '[red]not installed[/red]'})"
            console.print(f"[bold]{_safe(spec.name)}[/bold]  model {shown}  from {_safe(spec.source)}",
                          highlight=False)
            console.print(f"  {terminal_safe(spec.description)}", highlight=False, markup=False)
            if spec.types:
                types = ", ".join(f"{k} ({v})" if v else k for k, v in spec.types.items())
                console.print("  types: " + terminal_safe(types), highlight=False, markup=False)
            console.print("  keywords: " + terminal_safe(", ".join(spec.keywords) or "(none)"),
                          highlight=False, markup=False)
    else:
        table = Table(title="styles (--style NAME, or --style auto to pick by keywords)")
        table.add_column("name", no_wrap=True)
        table.add_column("model", no_wrap=True)
        table.add_column("types")
        table.add_column("keywords", min_width=16)
        for spec, model, installed in rows:
            if model is None:
                shown = Text("(error)", style="red")
            else:
                shown = Text(terminal_safe(model) + ("" if installed else "*"), style="" if installed else "red")
            table.add_row(Text(terminal_safe(spec.name)), shown, Text(terminal_safe(", ".join(spec.types))),
                          Text(terminal_safe(", ".join(spec.keywords))))
        console.print(table)
    console.print("* model not installed: `brushwork models` says where its file goes; "
                  "any style runs on the built-in demo model with --model demo.", highlight=False)
    console.print(f"user styles folder: {api.settings.resolved_styles_dir}", highlight=False)
    for note in [*registry.notes, *failures]:
        err_console.print(f"[yellow]note:[/yellow] {_safe(_one_line(note))}", highlight=False)
    for error in registry.errors:
        err_console.print(f"[yellow]skipped[/yellow] {_safe(error.source)}: {_safe(_one_line(error.message))}",
                          highlight=False)


ADAPTER_KINDS = ("lora", "vae", "controlnet", "upscaler", "embedding")


@handle_errors
def models(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option("--kind", "-k", help="checkpoint (default), or list one kind of file "
                                      "with its hashes: lora, vae, controlnet, upscaler, embedding.")] = "checkpoint",
) -> None:
    """List checkpoints by catalog name, where they load from, and whether they are installed;
    or, with --kind, the LoRAs/VAEs/ControlNets/upscalers/embeddings and their hashes."""
    api = load_api(ctx)
    catalog = api.catalog
    if kind != "checkpoint":
        if kind not in ADAPTER_KINDS:
            from brushwork.errors import NotFound

            raise NotFound("kind", kind, ("checkpoint", *ADAPTER_KINDS))
        _list_files(catalog, kind)
        return
    table = Table(title=f"models (folder: {catalog.models_dir})")
    for column in ("name", "family", "installed", "source", "description"):
        table.add_column(column, overflow="fold")
    for name, entry in sorted(catalog.checkpoints().items()):
        installed = catalog.is_installed(entry)
        source = entry.source_label if installed or entry.demo else f"expected: {entry.expected_location}"
        state = _yes_no(installed)
        if installed and not entry.demo:
            problem = _unusable(catalog, entry)
            if problem:
                state = f"[red]no[/red] ({escape(problem)})"
        table.add_row(Text(terminal_safe(name)), entry.family or "auto", state, Text(terminal_safe(source)),
                      Text(terminal_safe(entry.description)))
    console.print(table)
    for other in ADAPTER_KINDS:
        found = catalog.scan(other)  # type: ignore[arg-type]
        names = ", ".join(found) if found else "(none)"
        console.print(f"{other}s: {terminal_safe(names)}", highlight=False, markup=False)
    console.print("`brushwork models --kind lora` (or vae, controlnet, upscaler, embedding) lists files "
                  "with their hashes.", highlight=False, markup=False)


def _list_files(catalog: ModelCatalog, kind: str) -> None:
    """One kind's files: name (what prompts, styles and options use), hashes, family, file.

    "hash" is what A1111 writes in metadata: for a LoRA the short hash of its tensor data
    ("Lora hashes"), for the rest the first 10 hex of the file's sha256.
    """
    from brushwork.models.hashing import lora_short_hash, short_hash
    from brushwork.resolve.loras import lora_family

    table = Table(title=f"{kind}s (folder: {catalog.models_dir / KIND_FOLDERS[kind]})")
    for column in ("name", "hash", "sha256", "family", "file"):
        table.add_column(column, overflow="fold")
    for name in sorted(catalog.scan(kind)):  # type: ignore[arg-type]
        try:
            path = catalog.adapter(kind, name)  # type: ignore[arg-type]  # builds the demo LoRA on first use
            assert path is not None
            sha = catalog.sha256(path)
            shown = lora_short_hash(catalog.hashes.file_sha256(path, addnet=True)) \
                if kind == "lora" and path.suffix.lower() == ".safetensors" else short_hash(sha)
            family = (lora_family(path) or "?") if kind == "lora" else ""
            table.add_row(Text(terminal_safe(name)), shown, sha[:16] + "…", family, Text(terminal_safe(str(path))))
        except Exception as exc:  # one unreadable file must not hide the others
            table.add_row(Text(terminal_safe(name)), Text("unreadable", style="red"), "", "",
                          Text(_describe(exc)))
    if not table.row_count:
        console.print(f"no {kind}s installed in {catalog.models_dir / KIND_FOLDERS[kind]}", highlight=False,
                      markup=False)
        return
    console.print(table)


def _unusable(catalog: ModelCatalog, entry: CatalogEntry) -> str | None:
    """Why an installed checkpoint cannot load, from its header alone (None when it looks usable)."""
    from brushwork.models.offline_configs import (
        UnsupportedLayout,
        detect_family,
        family_of_pipeline_config,
        read_checkpoint_shapes,
    )

    path = entry.path
    if path is None:  # an HF snapshot: a diffusers folder like any other
        return None
    try:
        if path.is_dir():
            family_of_pipeline_config(path)
            return None
        if path.suffix.lower() != ".safetensors":
            return None if catalog.settings.allow_pickle else "pickle: set BRUSHWORK_ALLOW_PICKLE=1 or convert"
        detect_family(read_checkpoint_shapes(path))
    except UnsupportedLayout as exc:
        return f"unsupported: {_one_line(exc.what)}"
    except (ValueError, OSError) as exc:
        return f"unreadable: {_one_line(exc)}"
    return None


@contextmanager
def _file_errors_made_safe() -> Iterator[None]:
    """A message quoting a file's contents (a bad Plan field) must not carry escape sequences either."""
    try:
        yield
    except InvalidRequest as exc:
        if terminal_safe(exc.message) == exc.message:
            raise
        raise InvalidRequest(exc.field, terminal_safe(exc.message)) from None


@handle_errors
def info(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="A PNG with A1111 or brushwork metadata.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the embedded Plan as JSON.")] = False,
) -> None:
    """Show the generation parameters embedded in an image."""
    from brushwork.post.metadata import PARAMETERS_KEY, PLAN_KEY, read_plan
    from brushwork.post.png_read import read_text_chunks

    with _file_errors_made_safe():
        chunks = read_text_chunks(image)
        if as_json:
            plan = read_plan(image)
            text = json.dumps(json.loads(plan.to_json()), indent=2, ensure_ascii=False)
            console.print(terminal_safe(text, for_json=True), highlight=False, markup=False, soft_wrap=True)
            _note_if_refused(ctx, plan)
            return
        if PARAMETERS_KEY not in chunks and PLAN_KEY not in chunks:
            raise InvalidRequest("image", f"{image.name} has no generation metadata")
        if PARAMETERS_KEY in chunks:
            console.print(terminal_safe(chunks[PARAMETERS_KEY]), highlight=False, markup=False, soft_wrap=True)
        if PLAN_KEY in chunks:
            plan = read_plan(image)
            upscaled_later = "postprocessing" in chunks and plan.post is None
            what = "the image as generated, before `brushwork upscale`" if upscaled_later else "it"
            console.print(terminal_safe(
                f"\nbrushwork plan: style {plan.style}, model {plan.model.name} "
                f"(sha256 {plan.model.sha256[:16]}…); `brushwork replay {image}` regenerates {what}"),
                highlight=False, markup=False, soft_wrap=True)
            _note_if_refused(ctx, plan)


def _note_if_refused(ctx: typer.Context, plan: Any) -> None:
    """`info` shows any Plan it can parse; say so when this deployment would refuse to replay it."""
    from brushwork.contract.validation import validate_plan

    try:
        validate_plan(plan, load_api(ctx).settings.limits)
    except InvalidRequest as exc:
        err_console.print(f"note: replay would refuse this Plan: {escape(terminal_safe(str(exc)))}", highlight=False)
