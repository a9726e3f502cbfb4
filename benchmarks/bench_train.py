"""Training benchmark: vqart's VQ-VAE against the same encoder/decoder with vector-quantize-pytorch, same minutes."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from rich.console import Console
from torch import nn
from vector_quantize_pytorch import ResidualVQ, VectorQuantize

from common import OUT, bench_data
from vqart.checkpoint import load_checkpoint, load_weights
from vqart.config import Config, ModelConfig
from vqart.data import load_frames, split_frames
from vqart.metrics import evaluate
from vqart.model.vqvae import VQVAE
from vqart.train import train

TITLE = "Training: vqart VQ-VAE vs vector-quantize-pytorch, same encoder/decoder and minutes (CPU, 64x64)"


class LucidrainsQuantizer(nn.Module):
    """vector-quantize-pytorch (EMA, k-means init, dead-code expiry) behind vqart's quantizer interface:
    VectorQuantize for one level, ResidualVQ for several."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        options = dict(
            dim=cfg.code_dim, codebook_size=cfg.codebook_size, decay=cfg.ema_decay, kmeans_init=True,
            kmeans_iters=cfg.kmeans_iters, threshold_ema_dead_code=2, commitment_weight=1.0,
        )
        # ResidualVQ's accept_image_fmap breaks on non-square grids in 1.32: flatten the grid ourselves.
        self.vq = VectorQuantize(**options) if cfg.levels == 1 else ResidualVQ(num_quantizers=cfg.levels, **options)
        self.levels, self.codebook_size = cfg.levels, cfg.codebook_size
        self.layers = [self]  # the training loop reads `recoveries` per level
        self.recoveries = torch.zeros((), dtype=torch.long)

    def forward(self, z: torch.Tensor):
        """z (B, D, h, w) -> (z_q, codes (B, L, h, w), commitment loss, counts (L, K)), like ResidualQuantizer."""
        b, d, h, w = z.shape
        with torch.autocast(z.device.type, enabled=False):
            z_q, codes, commit = self.vq(z.float().flatten(2).transpose(1, 2))
        z_q = z_q.transpose(1, 2).reshape(b, d, h, w)
        codes = codes.reshape(b, h, w, self.levels).permute(0, 3, 1, 2)
        counts = torch.stack([torch.bincount(c.flatten(), minlength=self.codebook_size) for c in codes.unbind(1)])
        return z_q, codes, commit.sum(), counts


class BaselineVQVAE(VQVAE):
    """vqart's encoder and decoder around the baseline quantizer."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__(config)
        self.quantizer = LucidrainsQuantizer(self.config)


def _train_and_measure(
    name: str, model_class: type, data: Path, minutes: float, quick: bool, shape: ModelConfig
) -> dict[str, float]:
    """Train one variant for `minutes` on CPU, then measure it on the validation frames."""
    out = OUT / f"train_{name}{'_quick' if quick else ''}"  # the full vqart run is reused by later benchmarks
    shutil.rmtree(out, ignore_errors=True)
    with mock.patch("vqart.train.VQVAE", model_class):
        run = train(data, out, config=Config(model=shape), minutes=minutes, device="cpu", console=Console(stderr=True))
    config = json.loads((run / "config.json").read_text())
    model = model_class(ModelConfig(**config["model"]))
    load_weights(model, load_checkpoint(run / "checkpoints" / "best.pt")["model"], run)
    tc = config["train"]
    _, val = split_frames(load_frames(data), tc["val_fraction"], tc["val_segments"], tc["val_gap"])
    result = evaluate(model, val, torch.device("cpu"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["images_per_s"] for r in rows[1:]] or [rows[0]["images_per_s"]]  # epoch 1 pays k-means init
    return {**result, "images_per_s": float(np.median(speeds)), "epochs": len(rows)}


def compare(quick: bool, shape: ModelConfig, name: str = "") -> list[dict]:
    """Train vqart and the baseline with the model `shape` side by side and return the comparison table rows."""
    minutes = 0.25 if quick else 10.0
    data, source = bench_data(Path(tempfile.mkdtemp(prefix="vqart-bench-")))
    ours = _train_and_measure(f"vqart{name}", VQVAE, data, minutes, quick, shape)
    base = _train_and_measure(f"baseline{name}", BaselineVQVAE, data, minutes, quick, shape)
    baseline = "VectorQuantize" if shape.levels == 1 else f"ResidualVQ, {shape.levels} levels"
    k = ours["codebook_size"]
    where = f"{minutes:g} min CPU on {source}"
    rows = [
        {"measure": f"vqart val PSNR ({where})", "value": ours["psnr"], "unit": "dB", "target": ">= 28"},
        {"measure": "vqart val SSIM", "value": ours["ssim"], "unit": "", "target": ""},
        {"measure": "vqart active codes (val)", "value": ours["active_codes"], "unit": f"of {k}",
         "target": f">= {int(np.ceil(0.95 * k))}"},
        {"measure": "vqart perplexity (val)", "value": ours["perplexity"], "unit": "codes", "target": ">= 90"},
        {"measure": "vqart training speed, batch 64", "value": ours["images_per_s"], "unit": "images/s",
         "target": ">= 200"},
        {"measure": "vqart epochs in the budget", "value": ours["epochs"], "unit": "", "target": ""},
        {"measure": f"baseline (vector-quantize-pytorch {baseline}) val PSNR", "value": base["psnr"], "unit": "dB", "target": ""},
        {"measure": "baseline val SSIM", "value": base["ssim"], "unit": "", "target": ""},
        {"measure": "baseline active codes (val)", "value": base["active_codes"], "unit": f"of {k}", "target": ""},
        {"measure": "baseline perplexity (val)", "value": base["perplexity"], "unit": "codes", "target": ""},
        {"measure": "baseline training speed, batch 64", "value": base["images_per_s"], "unit": "images/s",
         "target": ""},
        {"measure": "PSNR gain over baseline", "value": ours["psnr"] - base["psnr"], "unit": "dB", "target": ">= 0"},
        {"measure": "active codes over baseline", "value": ours["active_codes"] - base["active_codes"],
         "unit": "codes", "target": ">= 0"},
    ]
    for row in rows:
        target = row["target"]
        row["ok"] = bool(row["value"] >= float(target.split()[-1])) if target else None
    return rows


def run(quick: bool = False) -> list[dict]:
    """The default model (one level of 128 codes) against VectorQuantize."""
    return compare(quick, ModelConfig())


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for row in run(quick=quick):
        print(f"{row['measure']:<60} {row['value']:>10.3f} {row['unit']:<10} {row['target']:<8} {row['ok']}")
