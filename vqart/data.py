"""Frame folders to uint8 arrays, and the one train/select/test split by time segment, twins dropped."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
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


PARTS = ("train", "select", "test")


def held_out_masks(n: int, fraction: float, segments: int, gap: int) -> dict[str, np.ndarray]:
    """Boolean masks over n frames: `segments` evenly spaced held-out blocks, alternately "select" and "test"
    (the first block selects), `gap` frames dropped around each, the rest "train"."""
    n_held = max(1, round(n * fraction))
    segments = max(1, min(segments, n_held))
    held = np.zeros(n, dtype=bool)
    select = np.zeros(n, dtype=bool)
    for i in range(segments):
        length = n_held // segments + (i < n_held % segments)
        end = (i + 1) * n // segments  # each block ends a 1/segments slice of the sketch's time line
        block = slice(max(0, end - length), end)
        held[block] = True
        select[block] = i % 2 == 0
    near = held.copy()
    for shift in range(1, min(gap, n - 1) + 1):
        near[shift:] |= held[:-shift]
        near[:-shift] |= held[shift:]
    if not (~near).any():
        raise VqartError(f"a sketch with {n} frames is too short to hold out validation frames; capture more frames")
    # With a single block there is nothing to report on but the frames that choose: one block does both.
    test = held & ~select if segments > 1 else held.copy()
    return {"train": ~near, "select": select, "test": test}


def has_twin(held: np.ndarray, train: np.ndarray, threshold: float, chunk: int = 64) -> np.ndarray:
    """For each held-out frame (N, H, W), whether some training frame lies within `threshold` mean absolute
    difference (uint8 levels): a periodic sketch shows the same picture again, and such a frame tests nothing."""
    if len(held) == 0 or len(train) == 0:
        return np.zeros(len(held), dtype=bool)
    t = torch.from_numpy(train.reshape(len(train), -1)).float()
    found = []
    for part in np.array_split(held, max(1, len(held) // chunk)):
        h = torch.from_numpy(part.reshape(len(part), -1)).float()
        found.append((torch.cdist(h, t, p=1).min(dim=1).values / h.shape[1] < threshold).numpy())
    return np.concatenate(found)


@dataclass(frozen=True)
class Split:
    """Each sketch's frames in three parts over time: "train" (fit on), "select" (checkpoints and early
    stopping are chosen on it) and "test" (figures are reported on it, never used to choose anything).
    Held-out frames with a twin among the sketch's training frames are dropped; `dropped` counts them."""

    sketches: dict[str, np.ndarray]
    masks: dict[str, dict[str, np.ndarray]]  # sketch -> part -> bool mask over its frames
    dropped: dict[str, dict[str, int]]  # sketch -> {"select": n, "test": n}

    def frames(self, part: str) -> np.ndarray:
        """All sketches' frames of one part, concatenated: uint8 (N, H, W)."""
        h, w = next(iter(self.sketches.values())).shape[1:]
        chunks = [frames[self.masks[name][part]] for name, frames in self.sketches.items()]
        return np.concatenate(chunks) if chunks else np.zeros((0, h, w), np.uint8)

    def labels(self, part: str) -> np.ndarray:
        """The sketch index (in `sketches` order) of each frame that `frames(part)` returns."""
        return np.concatenate(
            [np.full(int(self.masks[name][part].sum()), i) for i, name in enumerate(self.sketches)]
        ).astype(np.int64)

    def summary(self) -> dict[str, dict[str, int]]:
        """Per sketch: frames in each part and twins dropped, as config.json records it."""
        return {
            name: {**{part: int(m[part].sum()) for part in PARTS},
                   **{f"dropped_{part}": n for part, n in self.dropped[name].items()}}
            for name, m in self.masks.items()
        }

    def without_held_out(self) -> list[str]:
        """Sketches left with no test frames (all were twins): they are not in the reported figures."""
        return [name for name, m in self.masks.items() if not m["test"].any()]


def split_frames(sketches: dict[str, np.ndarray], train_config: Any) -> Split:
    """The one train/select/test split, by time segments per sketch, from a TrainConfig (or its dict)."""
    get = train_config.get if isinstance(train_config, dict) else partial(getattr, train_config)
    fraction, segments = get("val_fraction", 0.2), get("val_segments", 4)
    gap, threshold = get("val_gap", 2), get("twin_threshold", 1.0)
    masks, dropped = {}, {}
    for name, frames in sketches.items():
        m = held_out_masks(len(frames), fraction, segments, gap)
        dropped[name] = {}
        for part in ("select", "test"):
            idx = np.flatnonzero(m[part])
            twins = idx[has_twin(frames[idx], frames[m["train"]], threshold)]
            m[part][twins] = False
            dropped[name][part] = len(twins)
        masks[name] = m
    split = Split(sketches, masks, dropped)
    if not any(m["select"].any() for m in masks.values()):
        raise VqartError(
            "every held-out frame has a twin among the training frames (the sketches repeat): "
            "capture more frames (--frames) or lower train.twin_threshold"
        )
    return split
