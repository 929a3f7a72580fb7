"""`brushwork generate` and `brushwork replay`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from brushwork.cli.common import (
    console,
    ensure_output_dir,
    err_console,
    handle_errors,
    load_api,
    quiet_libraries,
    step_progress,
)
from brushwork.errors import InvalidRequest


def parse_size(size: str) -> tuple[int, int]:
    """'512x768' → (512, 768)."""
    parts = size.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InvalidRequest("size", f"expected WIDTHxHEIGHT such as 512x768, got {size!r}")
    return int(parts[0]), int(parts[1])


def _run_and_save(api: Any, plan: Any, output: Path | None) -> None:
    output = ensure_output_dir(output or api.settings.output_dir)
    for warning in plan.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if plan.model.demo:
        err_console.print("[yellow]note:[/yellow] the demo model has random weights: its images are noise",
                          highlight=False)
    from brushwork.runtime.samplers import from_plan

    label = f"{plan.style} · {plan.model.name} · {from_plan(plan.sampler, plan.schedule).name}"
    with step_progress(plan.steps, label) as on_step:
        result = api.run(plan, on_progress=on_step)
    for path in api.save(result, output):
        console.print(str(path), highlight=False, soft_wrap=True)
    seeds = ", ".join(str(s) for s in plan.seeds)
    steps = f"{plan.steps} step{'s' if plan.steps != 1 else ''}"
    err_console.print(f"seed {seeds} · {plan.width}x{plan.height} · {steps} · {result.timings['total']:.1f}s",
                      highlight=False)


@handle_errors
def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    style: Annotated[str, typer.Option("--style", "-s", help="Style name, or 'auto' to route by keywords. Options left out come from the style.")] = "auto",
    type_: Annotated[Optional[str], typer.Option("--type", "-t", help="Style variant (see `brushwork styles`).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Catalog name; 'demo' needs no download.")] = None,
    negative: Annotated[Optional[str], typer.Option("--negative", "-n", help="Negative prompt (replaces the style's).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps, 1-150.")] = None,
    cfg: Annotated[Optional[float], typer.Option(help="Guidance scale, 0-30.")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="Euler a, Euler, DPM++ 2M, DPM++ 2M Karras, DPM++ SDE Karras, DDIM, LMS, Heun, UniPC or LCM (snake_case works: euler_a).")] = None,
    size: Annotated[Optional[str], typer.Option(help="WIDTHxHEIGHT, multiples of 8 within 64-2048 (configurable), e.g. 512x768.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="0 to 4294967295; random when omitted (and printed).")] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Images in one run, 1-16; image i uses seed+i.")] = 1,
    clip_skip: Annotated[Optional[int], typer.Option(help="A1111 'Clip skip' (1 = last layer).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for the PNGs (default: outputs/ or BRUSHWORK_OUTPUT_DIR).")] = None,
) -> None:
    """Generate images from a prompt and save them as PNGs with embedded metadata."""
    from brushwork.plan import GenerationRequest

    width, height = parse_size(size) if size else (None, None)
    request = GenerationRequest.parse({
        "prompt": prompt, "style": style, "type": type_, "model": model, "negative_prompt": negative,
        "steps": steps, "cfg": cfg, "sampler": sampler, "width": width, "height": height,
        "seed": seed, "batch_size": batch, "clip_skip": clip_skip,
    })
    quiet_libraries()
    api = load_api(ctx)
    with err_console.status("resolving style and model (hashing a new model file takes a moment)…"):
        plan = api.plan(request)
    _run_and_save(api, plan, output)


@handle_errors
def replay(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="A PNG made by brushwork.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for the PNG.")] = None,
) -> None:
    """Regenerate an image from the Plan embedded in it (same weights ⇒ same pixels)."""
    from brushwork.post.metadata import read_plan

    plan = read_plan(image)
    quiet_libraries()
    _run_and_save(load_api(ctx), plan, output)
