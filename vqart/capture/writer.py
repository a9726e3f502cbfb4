"""Frames to disk: one folder per sketch of 8-bit gray PNGs and a manifest, which appears only when complete."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from vqart.atomic import atomic_dir, write_json

# The manifest fields that decide the frames: a capture whose manifest matches these is current.
SETTINGS = ("sketch_sha256", "harness_sha256", "render_scale", "p5", "width", "height", "fps", "seed", "frames")


def frame_name(index: int) -> str:
    """The file name of frame `index` (0-based)."""
    return f"frame_{index:05d}.png"


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a finished capture, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def is_current(folder: Path, settings: dict) -> bool:
    """True if `folder` holds a finished capture made with these settings of this very sketch."""
    manifest = read_manifest(folder)
    return manifest is not None and all(manifest.get(key) == settings[key] for key in SETTINGS)


def write_capture(folder: Path, batches: Iterable[np.ndarray], manifest: dict) -> tuple[int, bool]:
    """Write uint8 (n, H, W) batches as PNGs plus manifest.json; returns (frames, whether all were identical).

    The folder replaces any old one only after the last frame is written; an error leaves the old one as it was.
    """
    count, first, identical = 0, None, True
    with atomic_dir(folder) as tmp:
        for batch in batches:
            for frame in batch:
                if first is None:
                    first = frame.copy()
                elif identical and not np.array_equal(frame, first):
                    identical = False
                Image.fromarray(frame).save(tmp / frame_name(count), format="PNG", compress_level=1)
                count += 1
        write_json(tmp / "manifest.json", {**manifest, "frames": count})
    return count, identical
