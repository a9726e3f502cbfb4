"""The PNG pictures of a run: preview grids, training curves, codebook usage."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from vqart.atomic import write_bytes


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 (H, W) grayscale image as PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    write_bytes(path, buf.getvalue())


def preview_grid(originals: np.ndarray, recons: np.ndarray, scale: int = 2, pad: int = 2) -> np.ndarray:
    """Originals (N, H, W) in the top row over their reconstructions below, uint8, upscaled `scale` times."""
    n, h, w = originals.shape
    grid = np.full((2 * h + 3 * pad, n * (w + pad) + pad), 128, dtype=np.uint8)
    for row, frames in enumerate((originals, recons)):
        for i, frame in enumerate(frames):
            y, x = pad + row * (h + pad), pad + i * (w + pad)
            grid[y : y + h, x : x + w] = frame
    return np.kron(grid, np.ones((scale, scale), dtype=np.uint8))


def _save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Render a matplotlib figure to PNG bytes and write them atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def training_curve(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Loss (train/val) and codebook health (perplexity, active codes) per epoch."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_codes) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_recon"] for r in rows], label="train MSE")
    ax_loss.plot(epochs, [r["val_mse"] for r in rows], label="val MSE")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title(f"reconstruction (best val PSNR {max(r['val_psnr'] for r in rows):.1f} dB)")
    ax_loss.legend()
    ax_codes.plot(epochs, [r["perplexity"] for r in rows], label="val perplexity")
    ax_codes.plot(epochs, [r["active_codes"] for r in rows], label="val active codes")
    ax_codes.set_xlabel("epoch")
    ax_codes.set_title("codebook health")
    ax_codes.legend()
    _save_figure(fig, path)


def codebook_usage(counts: np.ndarray, path: str | Path) -> None:
    """Per-code usage on the validation frames, most used first."""
    counts = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    share = counts / max(counts.sum(), 1.0)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(np.arange(len(share)), share, width=1.0)
    ax.axhline(1.0 / len(share), color="k", lw=0.8, ls="--", label="uniform")
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("share of grid cells")
    ax.set_title(f"codebook usage: {(counts > 0).sum()}/{len(counts)} codes active")
    ax.legend()
    _save_figure(fig, path)
