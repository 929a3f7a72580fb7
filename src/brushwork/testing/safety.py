"""A fake safety filter for tests and docs: blocks the first image of every batch."""

from __future__ import annotations

from typing import Any


def block_first(images: list[Any]) -> list[bool]:
    return [index == 0 for index in range(len(images))]
