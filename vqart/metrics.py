"""Image and codebook measures: PSNR, SSIM, edge L1, perplexity; evaluating a model or a run on frames."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vqart.data import load_frames
from vqart.errors import VqartError


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of a code histogram: the effective number of codes in use."""
    p = counts.double() / counts.sum().clamp(min=1)
    return float(torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum()))


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def edge_l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between horizontal and vertical image gradients: penalises soft or misplaced lines."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]
    return (dx(recon) - dx(target)).abs().mean() + (dy(recon) - dy(target)).abs().mean()


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """(1, 1, size, size) normalised Gaussian kernel."""
    x = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004, Gaussian window, valid region) of (B, 1, H, W) images in [0, 1]."""
    window = min(window, x.shape[-1], x.shape[-2])
    w = _gaussian_window(window, sigma, x.device)
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = F.conv2d(x, w), F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x**2
    var_y = F.conv2d(y * y, w) - mu_y**2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Mean image-gradient magnitude per image of (B, 1, H, W): a sharpness measure (blur lowers it)."""
    dx = images[..., :-1, 1:] - images[..., :-1, :-1]
    dy = images[..., 1:, :-1] - images[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).sqrt().flatten(1).mean(1)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    frames: np.ndarray,
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Reconstruct uint8 frames (N, H, W) with `model` in eval mode; return quality and codebook measures.

    `sharpness` is the mean image-gradient magnitude of the reconstructions over that of the frames: < 1 is blur.
    """
    was_training = model.training
    model.eval()
    n = len(frames)
    if n == 0:
        raise VqartError("no frames to evaluate on")
    sums = {"mse": 0.0, "ssim": 0.0, "reg": 0.0, "edge": 0.0, "grad_recon": 0.0, "grad_frames": 0.0}
    counts = torch.zeros(model.levels, model.codebook_size, dtype=torch.long, device=device) if model.quantized else None
    for i in range(0, n, batch_size):
        x = torch.from_numpy(frames[i : i + batch_size]).to(device)[:, None].float() / 255.0
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = model(x)
        recon = out.recon.float().clamp(0, 1)
        b = len(x)
        sums["mse"] += float(F.mse_loss(recon, x, reduction="sum")) / x[0].numel()
        sums["ssim"] += float(ssim(recon, x).sum())
        sums["reg"] += float(out.reg) * b
        sums["edge"] += float(edge_l1(recon, x)) * b
        sums["grad_recon"] += float(gradient_magnitude(recon).sum())
        sums["grad_frames"] += float(gradient_magnitude(x).sum())
        if counts is not None:
            counts += out.counts
    model.train(was_training)
    mean = {k: v / n for k, v in sums.items()}
    result = {
        "mse": mean["mse"], "psnr": psnr(mean["mse"]), "ssim": mean["ssim"], "edge": mean["edge"],
        "sharpness": mean["grad_recon"] / max(mean["grad_frames"], 1e-12), "frames": n,
        "quantizer": model.config.quantizer,
    }
    if counts is None:
        return {**result, "kl": mean["reg"]}
    per_level = [perplexity(c) for c in counts]
    return {
        **result,
        "commit": mean["reg"],
        "perplexity": per_level[0],
        "active_codes": int((counts[0] > 0).sum()),
        "codebook_size": model.codebook_size,
        "levels": model.levels,
        "perplexity_levels": per_level,
        "active_levels": [int((c > 0).sum()) for c in counts],
        "usage": counts.cpu().numpy(),  # (L, K)
    }


def eval_run(run_path: str | Path, data: str | Path | None = None, device: str = "auto") -> dict[str, Any]:
    """Measure a trained run on its test frames (which chose nothing), or on every frame under `data`."""
    from vqart.run import open_run

    run = open_run(run_path, device=device)
    if data is None:
        split = run.split()
        frames = split.frames("test")
        source = f"test frames of {run.data_dir}"
        if not len(frames):
            raise VqartError(f"the run's data {run.data_dir} has no test frames left (all were twins of training "
                             "frames); evaluate on another folder with --data")
        skipped = split.without_held_out()
    else:
        frames = np.concatenate(list(load_frames(data).values()))
        source, skipped = str(data), []
    if frames.shape[1:] != run.frame_size:
        h, w = run.frame_size
        raise VqartError(
            f"frames in {source} are {frames.shape[2]}x{frames.shape[1]} but the model was trained on {w}x{h}"
        )
    result = evaluate(run.model, frames, run.device)
    result.pop("usage", None)
    return {"run": str(run.path), "data": source, "sketches_without_test_frames": skipped, **result}
