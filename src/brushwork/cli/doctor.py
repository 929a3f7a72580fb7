"""`brushwork doctor`: what this machine runs with, and the memory plans it (and typical cards) would get."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from brushwork.cli.common import console, handle_errors
from brushwork.errors import InvalidRequest

WORKLOADS = (("sd15", 512, 512), ("sdxl", 1024, 1024))
DEFAULT_VRAM = ("4GB", "8GB")
_UNITS = {"gb": 30, "gib": 30, "g": 30, "mb": 20, "mib": 20, "m": 20}


def parse_vram(text: str) -> int:
    """'4GB', '6GiB', '8000MB' → bytes. GB and GiB both mean 2^30: a card sold as '4 GB' has 4096 MiB."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", text)
    if not match or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise InvalidRequest("vram", f"expected a size like 4GB, 6GiB or 8000MB, got {text!r}")
    return int(float(match.group(1)) * (1 << _UNITS[match.group(2).lower()]))


def _here_memory(device: str, torch: Any) -> tuple[int, int]:
    """(total, free) bytes of the device this machine would run on; RAM for the CPU."""
    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info(int(device.partition(":")[2] or 0))
        return int(total), int(free)
    if device == "mps":
        total = int(torch.mps.recommended_max_memory())
        return total, max(0, total - int(torch.mps.driver_allocated_memory()))
    import psutil

    memory = psutil.virtual_memory()
    return int(memory.total), int(memory.available)


def _plan_rows(device: Any, dtype: str, target: str) -> list[dict[str, Any]]:
    from brushwork.runtime.planner import Workload, component_sizes, dtype_bytes, plan_memory

    rows = []
    for family, width, height in WORKLOADS:
        work = Workload(family, width, height, component_sizes(family, dtype), dtype_bytes=dtype_bytes(dtype))
        row: dict[str, Any] = {"target": target, "kind": device.kind, "total_bytes": device.total_bytes,
                               "free_bytes": device.free_bytes, "dtype": dtype,
                               "workload": f"{family} {width}x{height}"}
        try:
            plan = plan_memory(work, device)
        except InvalidRequest as exc:
            row.update(fits=False, plan=None, reason=exc.message)
        else:
            row.update(fits=True, plan=plan.to_dict(), reason=plan.reason)
        rows.append(row)
    return rows


@handle_errors
def doctor(
    ctx: typer.Context,
    vram: Annotated[Optional[list[str]], typer.Option("--vram", help="Also plan for a CUDA card of this size "
                    "(4GB, 6GiB, 8000MB; repeatable). Default: 4GB and 8GB.")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="Precision of the --vram cards: float16 (default), "
                     "float32 (GTX 16xx) or bfloat16.")] = "float16",
    as_json: Annotated[bool, typer.Option("--json", help="Print the same as JSON.")] = False,
) -> None:
    """Show the device, precision, threads and attention backend, and the memory plan for SD 1.5 and SDXL
    here and on --vram cards (what the planner predicts; the engine does not apply plans yet)."""
    if dtype not in ("float16", "float32", "bfloat16"):
        raise InvalidRequest("dtype", f"unknown dtype {dtype!r}; valid: bfloat16, float16, float32")
    sizes = [(text, parse_vram(text)) for text in (vram or DEFAULT_VRAM)]
    import torch

    from brushwork.config import Settings
    from brushwork.runtime.device import apply_threads, choose
    from brushwork.runtime.planner import Device

    settings = Settings.load(ctx.obj if isinstance(ctx.obj, Path) else None)
    policy = choose(settings.device, settings.dtype)
    apply_threads(settings.threads)  # what an engine built with these settings would use
    kind = "cuda" if policy.device.startswith("cuda") else policy.device
    total, free = _here_memory(policy.device, torch)
    cpu = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    info = {"device": policy.device, "dtype": policy.dtype, "dtype_reason": policy.reason,
            "threads": torch.get_num_threads(), "attention": "sdpa (torch.nn.functional.scaled_dot_product_attention)",
            "cpu_capability": cpu() if cpu else None, "torch": torch.__version__,
            "memory_total_bytes": total, "memory_free_bytes": free}
    rows = _plan_rows(Device(total, free, kind), policy.dtype, f"here ({policy.device})")  # type: ignore[arg-type]
    for text, size in sizes:  # a simulated card: 95% free (the driver and a desktop take the rest)
        rows += _plan_rows(Device(size, int(size * 0.95), "cuda"), dtype, f"--vram {text}")
    if as_json:
        console.print(json.dumps({**info, "plans": rows}, indent=2), highlight=False, markup=False, soft_wrap=True)
        return
    for key, value in info.items():
        if not key.startswith("memory"):
            console.print(f"{key}: {escape(str(value))}", highlight=False)
    console.print(f"memory: {total / (1 << 30):.2f} GiB total, {free / (1 << 30):.2f} GiB free", highlight=False)
    # Few, folding columns: the table stays readable in an 80-column terminal; the reasons follow it.
    table = Table(title="memory plans (predicted; the engine does not apply them yet)")
    for column in ("#", "target", "workload", "placement", "resident", "savers", "peak GiB"):
        table.add_column(column, overflow="fold")
    reasons = []
    for number, row in enumerate(rows, start=1):
        plan = row["plan"]
        reasons.append(f"{number}. {row['reason']}")
        workload = f"{row['workload']} {row['dtype']}"
        if plan is None:
            table.add_row(str(number), escape(row["target"]), workload, "[red]does not fit[/red]", "", "", "")
            continue
        savers = [name for name, key in (("vae-slicing", "vae_slicing"), ("vae-tiling", "vae_tiling"),
                                         ("attention-slicing", "attention_slicing")) if plan[key]]
        table.add_row(str(number), escape(row["target"]), workload, f"{plan['placement']} ({plan['profile']})",
                      ", ".join(plan["resident"]) or "-", ", ".join(savers) or "-",
                      f"{plan['predicted_peak_bytes'] / (1 << 30):.2f}")
    console.print(table)
    for reason in reasons:
        console.print(escape(reason), highlight=False)
