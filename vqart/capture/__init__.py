"""Headless, deterministic capture of p5.js sketches into folders of grayscale frames."""

from __future__ import annotations

import importlib

__all__ = ["CaptureResult", "capture", "parse_size"]


def __getattr__(name: str):
    # Lazy, so `python -m vqart.capture.browser` does not import its own module twice through this package.
    if name in __all__:
        return getattr(importlib.import_module("vqart.capture.pipeline"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
