"""What metadata writes about the software and the demo model."""

from __future__ import annotations

VERSION = "0.2.0"
DEMO_NOTE = "demo model with random weights: images are noise"
