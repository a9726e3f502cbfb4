"""The PNG pictures of a run: preview grids, training curves, codebook usage."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image, ImageDraw

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


def progression_sheet(originals: np.ndarray, rows: list[np.ndarray], epochs: list[int], scale: int = 2,
                      pad: int = 2) -> np.ndarray:
    """The same frames (top row) reconstructed at successive epochs, one row per epoch, labelled on the left."""
    n, h, w = originals.shape
    label = 40
    sheet = np.full(((len(rows) + 1) * (h + pad) + pad, label + n * (w + pad) + pad), 255, dtype=np.uint8)
    for r, frames in enumerate([originals, *rows]):
        for i, frame in enumerate(frames):
            y, x = pad + r * (h + pad), label + pad + i * (w + pad)
            sheet[y : y + h, x : x + w] = frame
    image = Image.fromarray(sheet, mode="L")
    draw = ImageDraw.Draw(image)
    for r, text in enumerate(["frames", *(f"ep {e}" for e in epochs)]):
        draw.text((2, pad + r * (h + pad) + h // 2 - 5), text, fill=0)
    return np.kron(np.asarray(image), np.ones((scale, scale), dtype=np.uint8))


def training_curve(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Reconstruction (train/select) and the bottleneck's health (perplexity and active codes, or the KL) per epoch."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_codes) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(epochs, [r["train_recon"] for r in rows], label="train MSE")
    ax_loss.plot(epochs, [r["val_mse"] for r in rows], label="select MSE")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_title(f"reconstruction (best select PSNR {max(r['val_psnr'] for r in rows):.1f} dB)")
    ax_loss.legend()
    if "perplexity_levels" in rows[-1]:
        for level in range(len(rows[-1]["perplexity_levels"])):
            ax_codes.plot(epochs, [r["perplexity_levels"][level] for r in rows], lw=1, label=f"perplexity, level {level + 1}")
        ax_codes.plot(epochs, [r["active_codes"] for r in rows], "k--", label="active codes, level 1")
        ax_codes.set_title("codebook health (select frames)")
        ax_codes.legend(fontsize=7, ncol=2)
    else:
        ax_codes.plot(epochs, [r["train_kl"] for r in rows], label="KL per pixel (train)")
        ax_codes.set_title("Gaussian latent")
        ax_codes.legend()
    ax_codes.set_xlabel("epoch")
    _save_figure(fig, path)


def codebook_usage(counts: np.ndarray, path: str | Path) -> None:
    """Per-code usage on the select frames, most used first: one panel per level."""
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, np.shape(counts)[-1])
    levels = len(counts)
    cols = min(levels, 4)
    rows = -(-levels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for level, ax in enumerate(axes.flat):
        if level >= levels:
            ax.axis("off")
            continue
        sorted_counts = np.sort(counts[level])[::-1]
        share = sorted_counts / max(sorted_counts.sum(), 1.0)
        ax.bar(np.arange(len(share)), share, width=1.0)
        ax.axhline(1.0 / len(share), color="k", lw=0.8, ls="--")
        ax.set_title(f"level {level + 1}: {(sorted_counts > 0).sum()}/{len(share)} codes active", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.supxlabel("code (sorted by use); dashed: uniform")
    fig.supylabel("share of grid cells")
    fig.tight_layout()
    _save_figure(fig, path)
