"""Importing brushwork has no side effects: no torch, no device probing, no registry filling."""

from __future__ import annotations

import subprocess
import sys

LIGHT_MODULES = [
    "brushwork", "brushwork.plan", "brushwork.config", "brushwork.resolve", "brushwork.styles.registry",
    "brushwork.models.catalog", "brushwork.runtime.samplers", "brushwork.post.metadata", "brushwork.cli.main",
]


def test_front_door_modules_do_not_import_torch_or_diffusers():
    code = (
        "import importlib, sys\n"
        f"for name in {LIGHT_MODULES!r}: importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_builtin_styles_are_not_registered_by_import():
    code = (
        "import sys, brushwork\n"
        "assert not any(m.startswith('brushwork.styles.builtin.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
