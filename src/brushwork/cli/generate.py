"""`brushwork generate` and `brushwork replay`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from brushwork.cli.common import (
    console,
    ensure_output_dir,
    err_console,
    handle_errors,
    load_api,
    quiet_libraries,
    resolve_output,
    step_progress,
)
from brushwork.errors import InvalidRequest
from brushwork.post.png_read import terminal_safe


def parse_size(size: str, field: str = "size") -> tuple[int, int]:
    """'512x768' → (512, 768)."""
    parts = size.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InvalidRequest(field, f"expected WIDTHxHEIGHT such as 512x768, got {size!r}")
    return int(parts[0]), int(parts[1])


def parse_outpaint(text: str) -> dict[str, int]:
    """'0,128,0,64' → left/right/up/down pixels."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise InvalidRequest("outpaint", f"expected LEFT,RIGHT,UP,DOWN pixels such as 0,128,0,0, got {text!r}")
    left, right, up, down = map(int, parts)
    return {"outpaint_left": left, "outpaint_right": right, "outpaint_up": up, "outpaint_down": down}


def _float(field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(field, f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InvalidRequest(field, f"expected a finite number, got {text!r}")
    return value


def parse_control(text: str, thresholds: tuple[int, int] | None, preprocess: bool) -> dict[str, Any]:
    """'canny:edges.png:0.8:0:0.6' → a ControlNet unit (model, image, scale, start, end).

    A ControlNet whose name contains "canny" gets the built-in canny
    preprocessing of the image unless --no-preprocess says it is a ready map.
    """
    model, _, rest = text.partition(":")
    if not model or not rest:
        raise InvalidRequest("control", f"expected MODEL:IMAGE[:SCALE[:START:END]], got {text!r}")
    pieces = rest.split(":")
    numbers: list[float] = []
    while len(pieces) > 1 and len(numbers) < 3:  # numbers trail the path; a path may contain ':'
        try:
            numbers.insert(0, _float("control", pieces[-1]))
        except InvalidRequest:
            break
        pieces.pop()
    if len(numbers) == 2:
        raise InvalidRequest("control", f"give SCALE, or SCALE:START:END, after the image; got {text!r}")
    image = Path(":".join(pieces)).expanduser()
    if not image.exists() and len(pieces) > 1 and Path(pieces[0]).expanduser().exists():
        raise InvalidRequest("control", f"after the image {pieces[0]!r} expected SCALE or SCALE:START:END "
                                        f"(numbers), got {':'.join(pieces[1:])!r}")
    unit: dict[str, Any] = {"model": model, "image": image}
    if numbers:
        unit["scale"] = numbers[0]
    if len(numbers) == 3:
        unit["start"], unit["end"] = numbers[1], numbers[2]
    if preprocess and "canny" in model.lower():
        unit["preprocessor"] = "canny"
        if thresholds is not None:
            unit["low_threshold"], unit["high_threshold"] = thresholds
    return unit


def parse_upscale(text: str) -> dict[str, Any]:
    """'4x-UltraSharp:2' → an upscale step (name, factor; default 2)."""
    parts = text.split(":")
    if len(parts) > 2 or not parts[0] or (len(parts) == 2 and not parts[1]):
        raise InvalidRequest("upscale", f"expected NAME or NAME:SCALE such as 4x-UltraSharp:2, got {text!r}")
    return {"upscaler": parts[0], "scale": _float("upscale", parts[1])} if len(parts) == 2 else {"upscaler": parts[0]}


def parse_lora(text: str) -> dict[str, Any]:
    """'detail:0.6' → a LoRA and its weight; 'detail' alone is weight 1 (A1111's `<lora:detail>`)."""
    name, sep, weight = text.rpartition(":")
    if not sep:
        name, weight = text, ""
    name = name.strip()
    if not name or (sep and not weight.strip()):
        raise InvalidRequest("lora", f"expected NAME or NAME:WEIGHT such as detail:0.6, got {text!r}")
    return {"name": name, "weight": _float("lora", weight)} if sep else {"name": name}


def parse_thresholds(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InvalidRequest("canny", f"expected LOW,HIGH such as 100,200, got {text!r}")
    return int(parts[0]), int(parts[1])


def _run_and_save(api: Any, plan: Any, output: Path) -> None:
    from brushwork.contract.validation import planned_steps

    output = ensure_output_dir(output)
    for warning in plan.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(terminal_safe(warning))}", highlight=False)
    if plan.model.demo:
        err_console.print("[yellow]note:[/yellow] the demo model has random weights: its images are noise",
                          highlight=False)
    label = terminal_safe(f"{plan.mode} · {plan.style} · {plan.model.name} · {plan.sampler}")
    total = planned_steps(plan)
    with step_progress(total, label) as on_step:
        result = api.engine.run(plan, on_progress=on_step)  # checked by resolve or `api.check`
    for path in api.save(result, output):
        console.print(str(path), highlight=False, soft_wrap=True, markup=False)
    seeds = ", ".join(str(s) for s in plan.seeds)
    steps = f"{total} step{'s' if total != 1 else ''}"
    size = f"{result.images[0].width}x{result.images[0].height}"
    ran = result.runtime
    where = f" · {ran['device']} {ran['dtype']}, {ran['threads']} threads" if ran else ""
    err_console.print(f"seed {seeds} · {size} · {steps} · {result.timings['total']:.1f}s{where}", highlight=False)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/yellow] {escape(terminal_safe(note))}", highlight=False)
    if any(result.filtered):
        err_console.print("[yellow]note:[/yellow] the safety filter blocked "
                          f"{sum(result.filtered)} image(s) (saved black)", highlight=False)


@handle_errors
def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    style: Annotated[str, typer.Option("--style", "-s", help="Style name, or 'auto' to route by keywords. Options left out come from the style.")] = "auto",
    type_: Annotated[Optional[str], typer.Option("--type", "-t", help="Style variant (see `brushwork styles`).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Catalog name ('demo' needs no download), or a path to a .safetensors file or diffusers folder.")] = None,
    negative: Annotated[Optional[str], typer.Option("--negative", "-n", help="Negative prompt (replaces the style's).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps, 1-{max_steps} (the limits.max_steps setting).")] = None,
    cfg: Annotated[Optional[float], typer.Option(help="Guidance scale, 0-30.")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="Euler a, Euler, DPM++ 2M, DPM++ 2M Karras, DPM++ SDE Karras, DDIM, LMS, Heun, UniPC, LCM, Euler SGM Uniform or Euler a SGM Uniform (snake_case works: euler_a).")] = None,
    size: Annotated[Optional[str], typer.Option(help="WIDTHxHEIGHT, multiples of 8, each side {min_size}-{max_size} (limits.min_size, limits.max_size).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="0 to 4294967295; random when omitted (and printed).")] = None,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Images in one run, 1-{max_batch} (limits.max_batch); image i uses seed+i.")] = 1,
    clip_skip: Annotated[Optional[int], typer.Option(help="A1111 'Clip skip', 1-12 (1 = last layer), less than the model's text-encoder layers.")] = None,
    init: Annotated[Optional[Path], typer.Option("--init", help="img2img: start from this image.", rich_help_panel="Image input")] = None,
    strength: Annotated[Optional[float], typer.Option(help="Denoising strength 0-1 (default 0.75; outpainting 1; 0 = the init image back).", rich_help_panel="Image input")] = None,
    resize_mode: Annotated[Optional[str], typer.Option(help="When the init image's size differs: just_resize, crop_and_resize or resize_and_fill.", rich_help_panel="Image input")] = None,
    mask: Annotated[Optional[Path], typer.Option("--mask", help="Inpaint: white = repaint, black = keep (same size as --init).", rich_help_panel="Inpaint")] = None,
    mask_blur: Annotated[Optional[int], typer.Option(help="Mask blur in pixels, 0-64 (default 4).", rich_help_panel="Inpaint")] = None,
    invert_mask: Annotated[bool, typer.Option("--invert-mask", help="Repaint the black part instead.", rich_help_panel="Inpaint")] = False,
    masked_content: Annotated[Optional[str], typer.Option(help="original, fill, latent_noise or latent_nothing.", rich_help_panel="Inpaint")] = None,
    inpaint_area: Annotated[Optional[str], typer.Option(help="whole, or masked (A1111 'Only masked': crop, generate at full size, paste back).", rich_help_panel="Inpaint")] = None,
    inpaint_padding: Annotated[Optional[int], typer.Option(help="Pixels around the mask for --inpaint-area masked, 0-256 (default 32).", rich_help_panel="Inpaint")] = None,
    outpaint: Annotated[Optional[str], typer.Option(help="Extend the canvas: LEFT,RIGHT,UP,DOWN pixels, e.g. 0,128,0,0 (needs --init).", rich_help_panel="Inpaint")] = None,
    control: Annotated[Optional[list[str]], typer.Option("--control", metavar="MODEL:IMAGE[:SCALE[:START:END]]", help="A ControlNet from models/controlnet/, repeatable. SCALE 0-2 (default 1); START/END 0-1, the share of steps it acts on. A model named *canny* gets canny preprocessing.", rich_help_panel="ControlNet")] = None,
    canny: Annotated[Optional[str], typer.Option("--canny", help="Canny thresholds LOW,HIGH, 0-255 (default 100,200).", rich_help_panel="ControlNet")] = None,
    no_preprocess: Annotated[bool, typer.Option("--no-preprocess", help="Control images are ready-made maps: no canny.", rich_help_panel="ControlNet")] = False,
    hires: Annotated[Optional[float], typer.Option("--hires", help="Hires fix (txt2img): upscale factor, greater than 1 and at most 4, e.g. 2.", rich_help_panel="Hires fix and upscaling")] = None,
    hires_steps: Annotated[Optional[int], typer.Option(help="Second-pass steps, 0-{max_steps} (0 = same as --steps).", rich_help_panel="Hires fix and upscaling")] = None,
    hires_denoise: Annotated[Optional[float], typer.Option(help="Second-pass denoising strength 0-1 (default 0.7).", rich_help_panel="Hires fix and upscaling")] = None,
    hires_upscaler: Annotated[Optional[str], typer.Option(help="Latent (default), Lanczos, or an upscaler model name.", rich_help_panel="Hires fix and upscaling")] = None,
    upscale: Annotated[Optional[list[str]], typer.Option("--upscale", metavar="NAME[:SCALE]", help="After generating: an upscaler from models/upscalers/ (or Lanczos), SCALE default 2, repeatable, applied in order; the whole chain at most {max_upscale}× (limits.max_upscale).", rich_help_panel="Hires fix and upscaling")] = None,
    resize_to: Annotated[Optional[str], typer.Option(help="Finally resize to exactly WIDTHxHEIGHT (Lanczos), at most limits.max_size × limits.max_upscale a side.", rich_help_panel="Hires fix and upscaling")] = None,
    lora: Annotated[Optional[list[str]], typer.Option("--lora", "-l", metavar="NAME[:WEIGHT]", help="A LoRA from models/loras/, repeatable; WEIGHT -5 to 5 (default 1). Same as <lora:NAME:WEIGHT> in the prompt.", rich_help_panel="LoRAs and refiner")] = None,
    refiner: Annotated[Optional[str], typer.Option("--refiner", help="SDXL: a refiner checkpoint that finishes the last steps (see `brushwork models`).", rich_help_panel="LoRAs and refiner")] = None,
    refiner_switch: Annotated[Optional[float], typer.Option("--refiner-switch", help="Share of the steps the base model runs before the refiner takes over, above 0 and at most 1 (default 0.8).", rich_help_panel="LoRAs and refiner")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="<path>", help="Folder for the PNGs (default: outputs/ or BRUSHWORK_OUTPUT_DIR).")] = None,
) -> None:
    """Generate images from a prompt (txt2img, img2img, inpaint, outpaint, ControlNet, hires) and save PNGs with metadata."""
    width, height = parse_size(size) if size else (None, None)
    fields: dict[str, Any] = {
        "prompt": prompt, "style": style, "type": type_, "model": model, "negative_prompt": negative,
        "steps": steps, "cfg": cfg, "sampler": sampler, "width": width, "height": height,
        "seed": seed, "batch_size": batch, "clip_skip": clip_skip,
        "init_image": init, "strength": strength, "resize_mode": resize_mode,
        "mask_image": mask, "mask_blur": mask_blur, "invert_mask": True if invert_mask else None,
        "masked_content": masked_content, "inpaint_area": inpaint_area, "inpaint_padding": inpaint_padding,
        "hr_scale": hires, "hr_steps": hires_steps, "hr_denoise": hires_denoise, "hr_upscaler": hires_upscaler,
        "refiner": refiner, "refiner_switch": refiner_switch,
    }
    if lora:
        fields["loras"] = [parse_lora(text) for text in lora]
    if outpaint is not None:
        fields.update(parse_outpaint(outpaint))
    if control:
        thresholds = parse_thresholds(canny)
        fields["controls"] = [parse_control(text, thresholds, not no_preprocess) for text in control]
    elif canny is not None or no_preprocess:
        raise InvalidRequest("canny" if canny is not None else "no_preprocess", "applies to --control images; give --control")
    if upscale:
        fields["upscale"] = [parse_upscale(text) for text in upscale]
    if resize_to is not None:
        fields["resize_to"] = parse_size(resize_to, "resize_to")
    quiet_libraries()
    api = load_api(ctx)
    out = resolve_output(output, api.settings.output_dir)
    ensure_output_dir(out)  # a bad -o fails before any work
    with err_console.status("resolving style and model (hashing a new model file takes a moment)…"):
        plan = api.plan(prompt, **{k: v for k, v in fields.items() if k != "prompt"})
    _run_and_save(api, plan, out)


@handle_errors
def replay(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="A PNG made by brushwork.")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="<path>", help="Folder for the PNG.")] = None,
) -> None:
    """Regenerate an image from the Plan embedded in it (same weights and inputs ⇒ same pixels)."""
    api = load_api(ctx)
    plan = api.read_plan(image)
    api.check(plan)  # before any progress bar: a bad Plan or a missing input image is one error line
    out = resolve_output(output, api.settings.output_dir)
    quiet_libraries()
    _run_and_save(api, plan, out)
