"""`brushwork doctor`: device facts and the planner's plans here and on simulated cards."""

from __future__ import annotations

import json

import pytest

from brushwork.cli.doctor import parse_vram
from brushwork.errors import InvalidRequest
from brushwork.runtime.planner import GiB, Device, Workload, component_sizes, plan_memory


def test_table_lists_device_facts_and_one_row_per_workload_and_card(cli):
    result = cli("doctor", "--vram", "4GB", "--vram", "8GB")
    assert result.exit_code == 0, result.output
    out = result.output
    for fact in ("device: cpu", "dtype: float32", "dtype_reason: CPU: float32", "threads: ", "attention: sdpa"):
        assert fact in out
    rows = [line for line in out.splitlines() if "512x512" in line or "1024x1024" in line]
    assert len(rows) == 6  # (here, 4GB, 8GB) × (SD 1.5, SDXL)
    # columns: # | target | workload (family size dtype) | placement (profile) | resident | savers | peak GiB
    by_target = {(row.split("│")[2].strip(), " ".join(row.split("│")[3].split()[:2])): row for row in rows}
    sdxl_8 = plan_memory(Workload("sdxl", 1024, 1024, component_sizes("sdxl")), Device(8 * GiB, int(8 * GiB * 0.95)))
    row = by_target[("--vram 8GB", "sdxl 1024x1024")]
    assert sdxl_8.placement in row and f"{sdxl_8.predicted_peak_bytes / GiB:.2f}" in row
    assert "resident" in by_target[("here (cpu)", "sd15 512x512")]
    assert "vae-tiling" in by_target[("--vram 4GB", "sdxl 1024x1024")]
    assert "does not apply them yet" in " ".join(out.split())


def test_json_has_the_same_facts_and_plans(cli):
    result = cli("doctor", "--json", "--vram", "6GiB", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"device", "dtype", "dtype_reason", "threads", "attention", "cpu_capability", "plans"} <= set(data)
    assert data["threads"] >= 1 and data["attention"].startswith("sdpa")
    assert [p["target"] for p in data["plans"]] == ["here (cpu)"] * 2 + ["--vram 6GiB"] * 2
    card = data["plans"][2]
    assert card["total_bytes"] == 6 * GiB and card["dtype"] == "float32" and card["fits"]
    assert {"placement", "resident", "vae_slicing", "vae_tiling", "attention_slicing", "attention",
            "upscaler_tile", "predicted_peak_bytes", "profile", "reason"} <= set(card["plan"])


@pytest.mark.parametrize("bad", ["4XB", "lots", "-4GB", "0GB", "4"])
def test_bad_vram_is_one_line_exit_2_naming_vram(cli, bad):
    result = cli("doctor", f"--vram={bad}")
    assert result.exit_code == 2, result.output
    assert "vram:" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("text", "size"), [("4GB", 4 * GiB), ("6GiB", 6 * GiB), ("8000MB", 8000 << 20),
                                            ("1.5 gb", int(1.5 * GiB)), ("512MiB", 512 << 20)])
def test_parse_vram(text, size):
    assert parse_vram(text) == size


def test_parse_vram_rejects_unknown_units():
    with pytest.raises(InvalidRequest, match="vram"):
        parse_vram("4TB")
