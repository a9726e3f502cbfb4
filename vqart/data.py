"""Frame folders to uint8 arrays, and the train/validation split by time segment."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vqart.errors import VqartError

log = logging.getLogger("vqart")

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _image_files(folder: Path) -> list[Path]:
    """The image files directly in `folder`, in name order (frame_00000.png, frame_00001.png, ...)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


def _read_gray(path: Path) -> np.ndarray | None:
    """One image as uint8 (H, W) grayscale, or None (with a warning naming it) when it cannot be decoded."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        log.warning("skipping corrupt frame %s (%s)", path, err)
        return None


def load_frames(data_dir: str | Path) -> dict[str, np.ndarray]:
    """Sketch name -> uint8 (N, H, W) frames in order, from data_dir/<sketch>/*.png (or PNGs in data_dir itself)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise VqartError(f"data folder {data_dir} does not exist; capture frames first (vqart capture sketches/ --out {data_dir})")
    folders = [data_dir] if _image_files(data_dir) else sorted(p for p in data_dir.iterdir() if p.is_dir())
    sketches: dict[str, np.ndarray] = {}
    for folder in folders:
        frames = [f for f in map(_read_gray, _image_files(folder)) if f is not None]
        if not frames:
            continue
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise VqartError(f"frames in {folder} have mixed sizes {sorted(shapes)}; recapture them at one size")
        sketches[folder.name] = np.stack(frames)
    if not sketches:
        raise VqartError(f"no frames found in {data_dir}; expected {data_dir}/<sketch>/frame_00000.png ...")
    shapes = {name: arr.shape[1:] for name, arr in sketches.items()}
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{name}: {h}x{w}" for name, (h, w) in shapes.items())
        raise VqartError(f"sketches in {data_dir} have mixed frame sizes ({detail}); capture them at one size")
    return sketches


_REF = re.compile(r"^(?P<sketch>[^:]+):(?P<frame>\d+)$")


def parse_ref(ref: str) -> tuple[str, int]:
    """Parse "sketch:12" into ("sketch", 12)."""
    match = _REF.match(ref.strip())
    if not match:
        raise VqartError(f"frame reference {ref!r} is malformed; write it as SKETCH:FRAME, e.g. orbits:12")
    return match["sketch"], int(match["frame"])


def validation_mask(n: int, fraction: float, segments: int, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, val) masks over n frames: `segments` evenly spaced held-out blocks, `gap` frames dropped around each."""
    n_val = max(1, round(n * fraction))
    segments = max(1, min(segments, n_val))
    val = np.zeros(n, dtype=bool)
    for i in range(segments):
        length = n_val // segments + (i < n_val % segments)
        end = (i + 1) * n // segments  # each block ends a 1/segments slice of the sketch's time line
        val[max(0, end - length):end] = True
    near = val.copy()
    for shift in range(1, min(gap, n - 1) + 1):
        near[shift:] |= val[:-shift]
        near[:-shift] |= val[shift:]
    train = ~near
    if not train.any():
        raise VqartError(f"a sketch with {n} frames is too short to hold out validation frames; capture more frames")
    return train, val


def split_frames(
    sketches: dict[str, np.ndarray], fraction: float = 0.1, segments: int = 2, gap: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate all sketches into (train, val) uint8 arrays, holding out whole time segments of each sketch."""
    train, val = [], []
    for frames in sketches.values():
        t, v = validation_mask(len(frames), fraction, segments, gap)
        train.append(frames[t])
        val.append(frames[v])
    return np.concatenate(train), np.concatenate(val)
