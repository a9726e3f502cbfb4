"""Generation benchmark: the spatial prior of the default shape (and of the one-level shape, beside it), trained
10 CPU minutes each on copies of the training benchmark's runs; held-out bits per frame and per level against
the unigram baseline; how sharp and how novel samples are (beside the VAE's samples from N(0, I)); frames/s.

Bits are measured on the test frames (the prior's best weights were chosen on the select frames). Sharpness
is the mean image-gradient magnitude of 64 samples over that of the test frames. Pictures for the README go to
benchmarks/out/: reconstructions and samples of the three shapes side by side.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import OUT, PRIOR_RUN, RUNS, short_run
from vqart import export, generate
from vqart.metrics import gradient_magnitude
from vqart.prior import train_prior
from vqart.run import Run, open_run

TITLE = "Generation: the spatial prior's bits per frame and level, sample sharpness, frames/s (CPU, 64x64)"


def _copy(source: Path, target: Path) -> Path:
    """A copy of a run without its priors, to train priors into."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("prior.*", "motion.*"))
    return target


def _runs(quick: bool) -> dict[str, Path]:
    """The shapes to compare: the training benchmark's runs, or (quick, or run alone) short ones."""
    if not quick and all((RUNS[n] / "checkpoints" / "best.pt").exists() for n in RUNS):
        return {"default": _copy(RUNS["default"], PRIOR_RUN), "one level": _copy(RUNS["one level"], OUT / "generate_one_level"),
                "VAE": RUNS["VAE"]}
    return {"default": _copy(short_run(OUT / "generate_scratch", quick), PRIOR_RUN)}


def _sharpness(frames: np.ndarray, reference: np.ndarray) -> float:
    """Mean image-gradient magnitude of `frames` over that of `reference` (uint8 stacks)."""
    grad = lambda f: float(gradient_magnitude(torch.from_numpy(f)[:, None].float() / 255).mean())
    return grad(frames) / grad(reference)


def _nearest(samples: np.ndarray, train: np.ndarray) -> float:
    """Mean L1 distance (0-255) from each sample to its nearest training frame."""
    flat = lambda x: torch.from_numpy(x.reshape(len(x), -1)).float()
    return float((torch.cdist(flat(samples), flat(train), p=1) / samples[0].size).min(dim=1).values.mean())


def _fps(make: Callable[[], np.ndarray], seconds: float) -> float:
    """Frames per second of `make` (after one warm-up call), repeated for at least `seconds`."""
    make()
    frames, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or frames == 0:
        frames += len(make())
    return frames / elapsed


def _row(measure: str, value, unit: str = "", target: str = "", ok: bool | None = None) -> dict:
    return {"measure": measure, "value": value, "unit": unit, "target": target, "ok": ok}


def _prior_rows(name: str, run: Run, minutes: float, targets: bool) -> list[dict]:
    """Train a shape's prior and report its held-out bits against the unigram baseline."""
    m = train_prior(run, minutes=minutes)
    check = lambda ok: bool(ok) if targets else None
    rows = [
        _row(f"{name}: prior bits per frame (held-out)", m["bits_per_frame"], "bits"),
        _row(f"{name}: unigram bits per frame (held-out)", m["baseline_bits_per_frame"], "bits"),
        _row(f"{name}: bits saved by the prior", 100 * m["bits_saved"], "%", ">= 30" if targets else "",
             check(m["bits_saved"] >= 0.30)),
        _row(f"{name}: prior training steps", m["train_steps"]),
    ]
    if len(m["bits_per_level"]) > 1:
        per_level = lambda bits: ", ".join(f"{b:.2f}" for b in bits)
        rows += [_row(f"{name}: prior bits per code, level by level", per_level(m["bits_per_level"])),
                 _row(f"{name}: unigram bits per code, level by level", per_level(m["baseline_bits_per_level"]))]
    return rows


def _pictures(runs: dict[str, Run], test: np.ndarray, samples: dict[str, np.ndarray]) -> None:
    """Reconstructions (test frames over each shape's) and samples of each shape, for the README."""
    pick = test[np.linspace(0, len(test) - 1, 8).astype(int)]
    rows = [pick] + [np.stack([generate.reconstruct(r, f) for f in pick]) for r in runs.values()]
    sheet = export.contact_sheet(export.upscale(np.concatenate(rows), 2), cols=len(pick))
    Image.fromarray(sheet).save(OUT / "reconstructions_compared.png")
    for name, frames in samples.items():
        export.save(frames[:16], OUT / f"samples_{name.replace(' ', '_')}.png", scale=2)


def run(quick: bool = False) -> list[dict]:
    """Priors for the VQ shapes, then sample sharpness and novelty, speed, and the pictures."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    runs = {name: open_run(path, device="cpu") for name, path in _runs(quick).items()}
    minutes = 0.1 if quick else 10.0
    rows = []
    for name, run in runs.items():
        if run.quantized:
            rows += _prior_rows(name, run, minutes, targets=name == "default")
    default = runs["default"]
    split = default.split()
    test, train_frames = split.frames("test"), split.frames("train")
    n = 16 if quick else 64
    samples = {name: generate.sample(run, n, seed=0) for name, run in runs.items()}
    for name, frames in samples.items():
        s = _sharpness(frames, test)
        rows.append(_row(f"{name}: sharpness of samples", s, "x", "0.85-1.15" if name == "default" else "",
                         bool(0.85 <= s <= 1.15) if name == "default" else None))
        rows.append(_row(f"{name}: samples' distance to the nearest training frame", _nearest(frames, train_frames),
                         "px (0-255)"))
    rows.append(_row("test frames' distance to the nearest training frame", _nearest(test[:n], train_frames), "px (0-255)"))
    seconds = 1.0 if quick else 5.0
    for batch, least in ((1, 15), (16, 30)):
        fps = _fps(lambda: generate.sample(default, batch, sampler="prior", seed=0), seconds)
        rows.append(_row(f"default: prior sampling, batch {batch}", fps, "frames/s", f">= {least}", bool(fps >= least)))
    a, b, c, d = generate.random_refs(default, 4, seed=0)
    for mode, make in {"interpolate": lambda: generate.interpolate(default, a, b, steps=16),
                       "walk (keyframes in motion)": lambda: generate.walk(default, [a, b, c], frames=16),
                       "grid": lambda: generate.grid(default, [a, b, c, d], rows=4, cols=4)}.items():
        rows.append(_row(f"default: {mode}, 16 frames a call", _fps(make, seconds), "frames/s"))
    _pictures(runs, test, samples)
    export.save(generate.walk(default, frames=30 if quick else 120, seed=0), OUT / "generate_walk.gif", fps=30, scale=3)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
