"""Generation benchmark: the prior's held-out bits per code against the unigram baseline, how its samples sit
relative to the training frames, and frames per second for each mode (CPU, 64x64, batch 1 and 16).

Uses a copy (so its own prior is left alone) of $VQART_BENCH_RUN or of the training benchmark's 10-minute
run; otherwise trains a short run on data/ (or synthetic shapes while nothing is captured). Contact sheets of both samplers go to benchmarks/out/.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from common import OUT, bench_data, trained_run
from vqart import export, generate
from vqart.config import Config, ModelConfig, TrainConfig
from vqart.data import load_frames, split_frames
from vqart.prior import train_prior
from vqart.run import Run, open_run
from vqart.train import train

TITLE = "Generation: prior vs unigram sampler, sample distances, frames/s per mode (CPU, 64x64)"


def _bench_run(quick: bool) -> Path:
    """A run folder of our own to train the prior into: a copy of a trained run, or a freshly trained one."""
    out = OUT / "generate_run"
    shutil.rmtree(out, ignore_errors=True)
    given = trained_run(quick)
    if given:
        shutil.copytree(given, out, ignore=shutil.ignore_patterns("prior.*"))
        return out
    config = Config(
        model=ModelConfig(channels=16, res_blocks=1, codebook_size=32, code_dim=16) if quick else ModelConfig(),
        train=TrainConfig(precision="fp32") if quick else TrainConfig(),
    )
    data, _ = bench_data(OUT / "generate_scratch", sketches=3 if quick else 6, frames=60 if quick else 120)
    return train(data, out, config=config, minutes=0.05 if quick else 3, device="cpu", console=Console(stderr=True, quiet=True))


def _l1(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """(len(a), len(b)) mean absolute pixel differences (0..255) between two stacks of frames."""
    flat = lambda x: torch.from_numpy(x.reshape(len(x), -1)).float()
    return torch.cdist(flat(a), flat(b), p=1) / a[0].size


def _distances(samples: np.ndarray, train_frames: np.ndarray) -> tuple[float, float]:
    """Mean distance from each sample to its nearest training frame, and mean distance between samples."""
    nearest = _l1(samples, train_frames).min(dim=1).values.mean().item()
    pairwise = _l1(samples, samples)
    n = len(samples)
    return nearest, (pairwise.sum() / (n * (n - 1))).item()


def _fps(make: Callable[[], np.ndarray], seconds: float) -> float:
    """Frames per second of `make` (after one warm-up call), repeated for at least `seconds`."""
    make()
    frames, start = 0, time.perf_counter()
    while True:
        frames += len(make())
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return frames / elapsed


def _speed_rows(run: Run, seconds: float) -> list[dict]:
    """frames/s per mode; batch = frames per forward pass (grids sampled together, latents decoded together)."""
    a, b, c, d = generate.random_frames(run, 4, seed=0)
    targets = {("sample (prior)", 16): 15, ("interpolate", 16): 300, ("walk", 16): 300}
    modes = {
        "sample (prior)": lambda n: generate.sample(run, n, sampler="prior", seed=0),
        "sample (unigram)": lambda n: generate.sample(run, n, sampler="unigram", seed=0),
        "interpolate": lambda n: generate.interpolate(run, a, b, steps=16),
        "walk": lambda n: generate.walk(run, [a, b, c], frames=16),
        "grid": lambda n: generate.grid(run, [a, b, c, d], rows=4, cols=4),
    }
    rows = []
    decode_batch = generate.DECODE_BATCH
    try:
        for mode, make in modes.items():
            for batch in (1, 16):
                generate.DECODE_BATCH = batch  # decoding modes: latents per decoder pass
                fps = _fps(partial(make, batch), seconds)
                rows.append(_row(f"{mode}, batch {batch}", fps, "frames/s", targets.get((mode, batch))))
    finally:
        generate.DECODE_BATCH = decode_batch
    motion = _fps(lambda: generate.motion(run, 8, seed=0), seconds)
    rows.append(_row("motion (prior, frame by frame)", motion, "frames/s", None))
    return rows


def _row(measure: str, value: float, unit: str, at_least: float | None) -> dict:
    """One table row; `at_least` is the target when there is one."""
    return {
        "measure": measure,
        "value": value,
        "unit": unit,
        "target": f">= {at_least:g}" if at_least is not None else "",
        "ok": None if at_least is None else bool(value >= at_least),
    }


def run(quick: bool = False) -> list[dict]:
    """Train (or copy) a run, train its prior, then measure bits, sample distances and speed."""
    threads = torch.get_num_threads()
    if quick:
        # The smoke check runs beside other work: one thread is 3x faster than two fighting for shared cores.
        torch.set_num_threads(1)
    try:
        return _measure(quick)
    finally:
        torch.set_num_threads(threads)


def _measure(quick: bool) -> list[dict]:
    """All the rows of `run`."""
    torch.manual_seed(0)
    path = _bench_run(quick)
    vq = open_run(path, device="cpu")
    metrics = train_prior(vq, minutes=0.05 if quick else 10.0, **({"dim": 64, "depth": 2} if quick else {}))
    tc = vq.config.get("train", {})
    train_frames, val_frames = split_frames(
        load_frames(vq.data_dir), tc.get("val_fraction", 0.1), tc.get("val_segments", 2), tc.get("val_gap", 2)
    )
    rows = [
        _row("prior bits per code (held-out)", metrics["bits_per_code"], "bits", None),
        _row("unigram bits per code (held-out)", metrics["unigram_bits_per_code"], "bits", None),
        _row("bits saved by the prior", 100 * metrics["bits_saved"], "%", 40),
    ]
    n = 8 if quick else 64
    held_out, _ = _distances(val_frames[np.random.default_rng(0).choice(len(val_frames), min(n, len(val_frames)), replace=False)], train_frames)
    rows.append(_row("held-out frames: distance to nearest training frame", held_out, "px (0-255)", None))
    for sampler in ("prior", "unigram"):
        samples = generate.sample(vq, n, sampler=sampler, seed=0)
        export.save(samples, OUT / f"generate_{sampler}_samples.png", scale=2)
        nearest, between = _distances(samples, train_frames)
        rows.append(_row(f"{sampler} samples: distance to nearest training frame", nearest, "px (0-255)", None))
        rows.append(_row(f"{sampler} samples: distance between samples", between, "px (0-255)", None))
    rows += _speed_rows(vq, 0.05 if quick else 3.0)
    export.save(generate.walk(vq, frames=30 if quick else 90, seed=0), OUT / "generate_walk.gif", fps=30, scale=3)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['measure']:<60} {row['value']:>10.3g} {row['unit']:<11} {row['target']:<8} {row['ok']}")
