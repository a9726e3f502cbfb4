"""Training benchmark: the default shape (8 residual levels of 128 codes) against the previous default (one level)
and the continuous-VAE baseline, the same encoder/decoder and CPU minutes each, on the bundled sketches.

Figures are measured on frames nothing was chosen on: the test frames of the honest split (twins of training
frames dropped; the best checkpoint was picked on the select frames), and the benchmark's own held-out sketches
(benchmarks/heldout/, never trained on), captured here and measured as `vqart eval RUN --data` does.
Sharpness is the mean image-gradient magnitude of the reconstructions over that of the frames (blur < 1).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from common import RUNS, bench_data, heldout_data
from vqart.config import Config, ModelConfig
from vqart.metrics import eval_run
from vqart.observers import ConsoleReport
from vqart.train import train

TITLE = "Training: the default shape vs the one-level shape and the VAE baseline, same minutes (CPU, 64x64)"
VARIANTS = {"default": ModelConfig(), "one level": ModelConfig(quantizer="vq", levels=1),
            "VAE": ModelConfig(quantizer="none")}


def _train(name: str, shape: ModelConfig, data: Path, minutes: float, quick: bool) -> Path:
    """Train one variant on CPU into its benchmark folder (the later benchmarks reuse the full runs)."""
    out = RUNS[name].with_name(RUNS[name].name + ("_quick" if quick else ""))
    shutil.rmtree(out, ignore_errors=True)
    return train(data, out, config=Config(model=shape), minutes=minutes, device="cpu",
                 observers=[ConsoleReport(Console(stderr=True))])


def _measure(run: Path, heldout: Path) -> dict:
    """Test-frame and held-out-sketch figures of a run, and its training speed (epoch 1 pays k-means init)."""
    test = eval_run(run, device="cpu")
    held = eval_run(run, heldout, device="cpu")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    speed = float(np.median([r["images_per_s"] for r in rows[1:]] or [rows[0]["images_per_s"]]))
    return {"test": test, "held": held, "speed": speed, "epochs": len(rows)}


def _row(measure: str, value: float, unit: str = "", target: str = "", ok: bool | None = None) -> dict:
    return {"measure": measure, "value": value, "unit": unit, "target": target, "ok": ok}


def _rows(name: str, m: dict, targets: bool) -> list[dict]:
    """One variant's rows; only the default shape carries the targets."""
    t, h = m["test"], m["held"]
    check = lambda ok: bool(ok) if targets else None
    rows = [
        _row(f"{name}: test PSNR", t["psnr"], "dB", ">= 30" if targets else "", check(t["psnr"] >= 30)),
        _row(f"{name}: test SSIM", t["ssim"], "", ">= 0.95" if targets else "", check(t["ssim"] >= 0.95)),
        _row(f"{name}: held-out sketches PSNR", h["psnr"], "dB", ">= 25" if targets else "", check(h["psnr"] >= 25)),
        _row(f"{name}: held-out sketches SSIM", h["ssim"]),
        _row(f"{name}: sharpness of reconstructions", t["sharpness"], "x", "0.85-1.15" if targets else "",
             check(0.85 <= t["sharpness"] <= 1.15)),
        _row(f"{name}: training speed, batch 64", m["speed"], "images/s", ">= 200" if targets else "",
             check(m["speed"] >= 200)),
        _row(f"{name}: epochs in the budget", m["epochs"]),
    ]
    if "perplexity_levels" in t:
        k = t["codebook_size"]
        active, ppl = min(t["active_levels"]), min(t["perplexity_levels"])
        rows += [
            _row(f"{name}: active codes, worst of {t['levels']} level(s)", active, f"of {k}",
                 f">= {int(np.ceil(0.95 * k))}" if targets else "", check(active >= 0.95 * k)),
            _row(f"{name}: perplexity, worst of {t['levels']} level(s)", ppl, "codes",
                 f">= {0.6 * k:g}" if targets else "", check(ppl >= 0.6 * k)),
        ]
    return rows


def run(quick: bool = False) -> list[dict]:
    """Train the three variants side by side, then measure each on the test frames and the held-out sketches."""
    torch.set_num_threads(2)
    minutes = 0.25 if quick else 10.0
    scratch = Path(tempfile.mkdtemp(prefix="vqart-bench-train-"))
    data, source = bench_data(scratch)
    heldout = heldout_data(scratch)
    rows = []
    for name, shape in VARIANTS.items():
        print(f"-- {name} ({minutes:g} min on {source})", flush=True)
        m = _measure(_train(name, shape, data, minutes, quick), heldout)
        rows += _rows(name, m, targets=name == "default")
        if name == "default":
            levels = ", ".join(f"{p:.0f}" for p in m["test"]["perplexity_levels"])
            rows.append(_row("default: perplexity of each level", levels))
    shutil.rmtree(scratch, ignore_errors=True)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
