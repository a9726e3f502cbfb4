"""Synthetic sketches for tests and benchmarks: moving shapes written the way `vqart capture` writes frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def moving_shapes(n: int = 40, size: tuple[int, int] = (64, 64), kind: int = 0) -> np.ndarray:
    """uint8 (n, H, W): a white disc (kind even) or grey box (kind odd) circling on black, one loop per n frames."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    frames = np.zeros((n, h, w), dtype=np.uint8)
    for t in range(n):
        a = 2 * np.pi * t / n
        cx, cy = w / 2 + w / 4 * np.cos(a * (kind + 1)), h / 2 + h / 4 * np.sin(a)
        if kind % 2 == 0:
            frames[t][(xx - cx) ** 2 + (yy - cy) ** 2 < (6 + kind) ** 2] = 255
        else:
            frames[t][(abs(xx - cx) < 6) & (abs(yy - cy) < 4 + kind)] = 180
        frames[t][h - 3 :, : int(w * t / n)] = 120  # a progress line along the bottom: every frame differs
    return frames


def write_sketch(root: Path, name: str, frames: np.ndarray) -> Path:
    """Write frames as data/<name>/frame_00000.png ... plus a manifest.json like `vqart capture` does."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame, mode="L").save(folder / f"frame_{i:05d}.png")
    manifest = {"sketch": name, "width": frames.shape[2], "height": frames.shape[1], "fps": 30, "seed": 0,
                "frames": len(frames)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def sliding_square(n: int = 64, size: tuple[int, int] = (64, 64), step: int = 4, row: int = 24) -> np.ndarray:
    """uint8 (n, H, W): a white 12x12 square on black moving `step` pixels right per frame, wrapping around."""
    h, w = size
    frames = np.zeros((n, h, w), dtype=np.uint8)
    for t in range(n):
        x = (8 + step * t) % w
        cols = (np.arange(x, x + 12) % w)
        frames[t][row : row + 12, cols] = 255
    return frames
