"""Frames to files an artist can keep: looping GIF, H.264 MP4, a PNG contact sheet, or a folder of PNGs."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image

from vqart.atomic import atomic_dir, atomic_path
from vqart.errors import VqartError

log = logging.getLogger(__name__)

FORMATS = {".gif": "gif", ".mp4": "mp4", ".png": "png", "": "folder"}
SUPPORTED = ".gif (looping animation), .mp4 (H.264 video), .png (contact sheet), or a folder (no extension)"


def format_for(out: str | Path) -> str:
    """The format that `out` asks for: "gif", "mp4", "png" or "folder"; VqartError when unsupported."""
    out = Path(out)
    if out.is_dir():
        return "folder"
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise VqartError(f"cannot write {out}: unsupported extension {out.suffix!r}; use {SUPPORTED}")
    return fmt


def upscale(frames: np.ndarray, scale: int = 4, smooth: bool = False) -> np.ndarray:
    """Enlarge (N,H,W) uint8 frames by an integer factor: crisp nearest-neighbour, or bicubic when smooth."""
    if scale == 1:
        return frames
    resample = Image.Resampling.BICUBIC if smooth else Image.Resampling.NEAREST
    h, w = frames.shape[1:]
    return np.stack([np.asarray(Image.fromarray(f).resize((w * scale, h * scale), resample)) for f in frames])


def contact_sheet(frames: np.ndarray, cols: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile (N,H,W) frames into one image, row by row, `gap` black pixels apart."""
    n, h, w = frames.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    sheet = np.zeros((rows * (h + gap) - gap, cols * (w + gap) - gap), dtype=np.uint8)
    for i, frame in enumerate(frames):
        y, x = divmod(i, cols)
        sheet[y * (h + gap) : y * (h + gap) + h, x * (w + gap) : x * (w + gap) + w] = frame
    return sheet


def check(out: str | Path, fps: float = 30, scale: int = 4) -> str:
    """Validate the output options before any work is done; returns the format `out` asks for."""
    fmt = format_for(out)
    if not fps > 0:
        raise VqartError(f"cannot write {out}: fps must be positive, got {fps}")
    if int(scale) != scale or scale < 1:
        raise VqartError(f"cannot write {out}: scale must be a whole number >= 1, got {scale}")
    return fmt


def save(frames: np.ndarray, out: str | Path, fps: float = 30, scale: int = 4, smooth: bool = False) -> Path:
    """Write uint8 (N,H,W) frames to `out`, the format picked by its extension; atomic. Returns the path."""
    out = Path(out)
    fmt = check(out, fps, scale)
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise VqartError(f"cannot write {out}: expected uint8 frames shaped (N,H,W) with N >= 1, got {frames.dtype} {frames.shape}")
    frames = upscale(frames, int(scale), smooth)
    if fmt == "gif":
        _save_gif(frames, out, fps)
    elif fmt == "mp4":
        _save_mp4(frames, out, fps)
    elif fmt == "png":
        with atomic_path(out) as tmp:
            Image.fromarray(contact_sheet(frames)).save(tmp, format="PNG")
    else:
        with atomic_dir(out) as tmp:
            for i, frame in enumerate(frames):
                Image.fromarray(frame).save(tmp / f"frame_{i:05d}.png")
    return out


def _save_gif(frames: np.ndarray, out: Path, fps: float) -> None:
    """A GIF that loops forever; mode "L" frames give Pillow a 256-grey palette, and optimize keeps it small."""
    # GIF delays are whole centiseconds; Pillow rounds the millisecond duration for us.
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(out) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=1000 / fps, loop=0, optimize=True)


def _save_mp4(frames: np.ndarray, out: Path, fps: float) -> None:
    """H.264 in yuv420p (plays everywhere), which needs even sizes: odd ones get one edge-replicated row/column."""
    h, w = frames.shape[1:]
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        log.warning("note: H.264 needs even sizes; padded %dx%d to %dx%d for %s", w, h, w + pad_w, h + pad_h, out)
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w)), mode="edge")
    with atomic_path(out) as tmp:
        # macro_block_size=2: we already made sizes even, so imageio must not resize to multiples of 16.
        writer = imageio.get_writer(
            tmp, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p", macro_block_size=2, quality=8
        )
        with writer:
            for frame in frames:
                writer.append_data(frame)
