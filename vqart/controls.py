"""The controls a person may apply to a running training (from the live view): names, ranges, one parser."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vqart.errors import VqartError

NAMES = ("beta", "lr_scale", "pause", "resume", "stop", "reseed")
MAX_LR_SCALE = 100.0


@dataclass(frozen=True)
class Control:
    """One request to change the running training: `value` is a float for beta and lr_scale, else None."""

    name: str
    value: float | None = None
    id: str | int | None = None


def parse_control(name: Any, value: Any = None, rid: str | int | None = None) -> Control:
    """A valid Control, or VqartError saying what was wrong (the training is left unchanged)."""
    if name not in NAMES:
        raise VqartError(f"unknown control {str(name)[:40]!r}; use one of {', '.join(NAMES)}")
    if name not in ("beta", "lr_scale"):
        return Control(name, None, rid)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise VqartError(f"{name} needs a number, got {str(value)[:40]!r}")
    if name == "beta" and value < 0:
        raise VqartError(f"beta must be >= 0, got {value}")
    if name == "lr_scale" and not 0 < value <= MAX_LR_SCALE:
        raise VqartError(f"lr_scale must be above 0 and at most {MAX_LR_SCALE:g}, got {value}")
    return Control(name, float(value), rid)
