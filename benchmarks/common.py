"""What the benchmarks share: where they write, which frames they train on, which trained run they use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
RUNS = {name: OUT / f"train_{name.replace(' ', '_')}" for name in ("default", "one level", "VAE")}  # bench_train's
TRAINED_RUN = RUNS["default"]  # the training benchmark's full 10-minute run of the default shape
PRIOR_RUN = OUT / "generate_run"  # a copy of it with the 10-minute spatial prior, then the motion prior
HELDOUT = ROOT / "benchmarks" / "heldout"  # sketches written for the benchmarks, never trained on
sys.path.insert(0, str(ROOT / "tests"))  # tests/synthetic.py: stand-in sketches while data/ is empty

from vqart.data import load_frames  # noqa: E402
from vqart.errors import VqartError  # noqa: E402


def bench_data(scratch: Path, sketches: int = 6, frames: int = 120) -> tuple[Path, str]:
    """The captured sketches in data/, or synthetic moving shapes written under `scratch` when none are captured."""
    try:
        load_frames(ROOT / "data")
        return ROOT / "data", "bundled sketches"
    except VqartError:
        from synthetic import moving_shapes, write_sketch

        folder = scratch / "synthetic_data"
        for kind in range(sketches):
            write_sketch(folder, f"synthetic{kind}", moving_shapes(frames, (64, 64), kind))
        return folder, "synthetic shapes (data/ is empty)"


def heldout_data(scratch: Path) -> Path:
    """The held-out sketches captured (64x64, 240 frames; reused while up to date) into OUT/heldout_data."""
    from vqart.capture import capture

    folder = OUT / "heldout_data"
    results = capture([HELDOUT], folder, frames=240, size=(64, 64))
    failed = [r.sketch for r in results if r.status == "failed"]
    if failed:
        raise RuntimeError(f"held-out sketches failed to capture: {failed}")
    return folder


def trained_run(quick: bool) -> Path | None:
    """$VQART_BENCH_RUN, else (full runs) the training benchmark's 10-minute run when it exists, else None."""
    given = os.environ.get("VQART_BENCH_RUN")
    if given:
        return Path(given)
    if not quick and (TRAINED_RUN / "checkpoints" / "best.pt").exists():
        return TRAINED_RUN
    return None


def short_run(scratch: Path, quick: bool) -> Path:
    """A briefly trained run of the default shape (a tiny one when quick) on data/ or synthetic shapes."""
    from vqart.config import Config, ModelConfig, TrainConfig
    from vqart.train import train

    data, _ = bench_data(scratch / "data", sketches=3 if quick else 6, frames=60 if quick else 120)
    model = ModelConfig(channels=16, res_blocks=1, codebook_size=32, code_dim=16, levels=2) if quick else ModelConfig()
    config = Config(model=model, train=TrainConfig(precision="fp32"))
    return train(data, scratch / "run", config=config, minutes=0.1 if quick else 1.0, device="cpu", force=True)


def prior_run(scratch: Path, quick: bool) -> Path:
    """A run with its spatial prior: the generation benchmark's, else a short run with a prior trained briefly."""
    if not quick and (PRIOR_RUN / "prior.pt").exists():
        return PRIOR_RUN
    from vqart.prior import train_prior
    from vqart.run import open_run

    run = short_run(scratch, quick)
    train_prior(open_run(run, device="cpu"), minutes=0.1 if quick else 1.0)
    return run
