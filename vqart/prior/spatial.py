"""The spatial prior: what one frame's code grid looks like, every level of it, given which sketch it is from.
Trained on the run's training frames, its best weights chosen by bits on the select frames, its figures measured
on the test frames.

The default size was measured on the bundled sketches: dim 64 and small batches (more steps per CPU minute;
fit.BATCH_SIZE) beat dim 128 and batches of 32 or 64; grid-aware blocks (a 3x3 convolution and row/column
positions) took the bits saved from 28.5% to 38.9% in the same minutes; dropout only cost steps (the prior
underfits). The sketch label was measured too (the benchmark's 10-minute FSQ run, 4 minutes each, select
frames): without it the prior spends its minutes telling sketches apart and samples a gray blend of all of them
(31.2% of the unigram's bits saved, samples 0.90 as sharp as the frames); given the label (dropped from a tenth
of the training grids in that trial, which nothing here needs), 34.0% saved counting the label's own bits, and
samples 0.98 as sharp that each look like one sketch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pickle
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from vqart.atomic import atomic_path, write_json
from vqart.errors import VqartError
from vqart.prior.fit import BATCH_SIZE, fit
from vqart.prior.blocks import Generators
from vqart.prior.grid import GridConfig, GridModel, fewest_steps
from vqart.run import Run

log = logging.getLogger(__name__)

PRIOR_FILE = "prior.pt"
METRICS_FILE = "prior.json"
FORMAT = 2  # 1: one token per level and cell, no depth head (vqart 0.1)
SPATIAL_FORMAT = 3  # 2: no sketch label (vqart 0.2)
MOST_STEPS = 8  # decoding steps the choice starts from, and what a prior from before the choice used


def as_tokens(codes: torch.Tensor) -> torch.Tensor:
    """Code grids (N, h, w) or (N, L, h, w) as tokens (N, L, P)."""
    codes = codes[:, None] if codes.dim() == 3 else codes
    return codes.flatten(2)


def as_grids(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tokens (N, L, P) back to what the VQ-VAE decodes: (N, h, w) for one level, else (N, L, h, w)."""
    grids = tokens.reshape(len(tokens), -1, height, width)
    return grids[:, 0] if grids.shape[1] == 1 else grids


def encode_tokens(run: Run, frames: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """uint8 frames (N, H, W) as tokens (N, L, P) on the run's device."""
    codes = [run.encode_codes(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)]
    return as_tokens(torch.cat(codes)).to(run.device)


def unigram_bits(train: torch.Tensor, held_out: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Total bits per level (L,) of held-out tokens (N, L, P) under each level's add-one-smoothed code histogram
    of the training tokens: the baseline a prior must beat."""
    totals = []
    for level in range(train.shape[1]):
        counts = torch.bincount(train[:, level].flatten(), minlength=codebook_size).double() + 1
        totals.append(-(counts / counts.sum()).log2()[held_out[:, level].flatten()].sum())
    return torch.stack(totals)


def bits_report(model_bits: torch.Tensor, baseline_bits: torch.Tensor, n: int, cells: int) -> dict[str, Any]:
    """Per frame, per code and per level figures of a model's total bits (L,) against a baseline's, over n frames."""
    levels = len(model_bits)
    return {
        "bits_per_frame": float(model_bits.sum()) / n,
        "baseline_bits_per_frame": float(baseline_bits.sum()) / n,
        "bits_saved": 1.0 - float(model_bits.sum() / baseline_bits.sum()),
        "bits_per_code": float(model_bits.sum()) / (n * levels * cells),
        "baseline_bits_per_code": float(baseline_bits.sum()) / (n * levels * cells),
        "bits_per_level": [float(b) / (n * cells) for b in model_bits],  # per code of that level
        "baseline_bits_per_level": [float(b) / (n * cells) for b in baseline_bits],
    }


def model_fingerprint(run: Run) -> str:
    """A short hash of the VQ-VAE's weights, so a prior can tell it was trained on another checkpoint."""
    digest = hashlib.sha256()
    for name, tensor in run.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def sketch_label(sketches: Sequence[str], sketch: str, prior: str) -> int:
    """The label id of a sketch name; VqartError naming the sketches `prior` (e.g. "the motion prior") knows."""
    if sketch not in sketches:
        raise VqartError(f"unknown sketch {sketch!r}; {prior} knows {', '.join(sketches)}")
    return list(sketches).index(sketch)


class SpatialPrior(nn.Module):
    """A GridModel whose every cell also sees the frame's sketch label: frames are scored, and sampled, as a
    sketch first, then a frame of it."""

    def __init__(self, cfg: GridConfig, sketches: Sequence[str]):
        super().__init__()
        self.cfg, self.sketches = cfg, list(sketches)
        self.grid = GridModel(cfg)
        self.label_emb = nn.Embedding(len(self.sketches), cfg.dim)
        # log p(sketch), each sketch's share of the training frames (set by train_prior)
        self.register_buffer("label_logp", torch.full((len(self.sketches),), -math.log(len(self.sketches))))

    def label(self, sketch: str) -> int:
        """The label id of a sketch name; VqartError naming the choices otherwise."""
        return sketch_label(self.sketches, sketch, "the spatial prior")

    def _context(self, labels: torch.Tensor) -> torch.Tensor:
        return self.label_emb(labels)[:, None]  # (B, 1, dim): the same for every cell

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-entropy of masked cells' codes of tokens (B, L, P) from sketches `labels` (B,)."""
        return self.grid.loss(tokens, generator, context=self._context(labels))

    @torch.no_grad()
    def bits(self, tokens: torch.Tensor, labels: torch.Tensor, *, steps: int = 8) -> torch.Tensor:
        """Total bits per level (L,) of tokens (N, L, P) from sketches `labels` (N,), as a two-part code: the
        sketch (by its share of the training frames, counted in the first level), then the frame given it. That
        is a proper likelihood, and an upper bound on the mixture over sketches, which it hardly exceeds: a frame
        tells its sketch (measured at 4 minutes: 34.04% of the unigram's bits saved by the mixture, 34.07% by the
        frame given its sketch without the sketch's bits)."""
        total = self.grid.bits(tokens, steps=steps, context=self._context(labels)).sum(0)
        total[0] -= self.label_logp.double()[labels].sum() / math.log(2)
        return total

    @torch.no_grad()
    def sample(self, n: int, *, labels: torch.Tensor | None = None, generator: Generators = None,
               **options: Any) -> torch.Tensor:
        """n grids (n, L, P) of sketches `labels` (n,), or of sketches drawn by their share of the training frames;
        `options` are GridModel.sample's (steps, temperature, top_k, ...)."""
        if labels is None:
            g = generator[0] if isinstance(generator, list) else generator
            labels = torch.multinomial(self.label_logp.exp(), n, replacement=True, generator=g)
        return self.grid.sample(n, generator=generator, context=self._context(labels), **options)


def save_model(run: Run, model: torch.nn.Module, cfg: GridConfig, filename: str, version: int = FORMAT,
               **extra: Any) -> None:
    """Store a prior in the run folder (atomically), tied to the VQ-VAE weights it was trained on."""
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    with atomic_path(run.path / filename) as tmp:
        torch.save({"format": version, "config": asdict(cfg), "state": state,
                    "vq_fingerprint": model_fingerprint(run), **extra}, tmp)


def read_model(run: Run, filename: str, retrain: str, version: int = FORMAT) -> dict | None:
    """A stored prior's contents, checked to fit the run; None when there is none. `retrain` is the command."""
    path = run.path / filename
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location=run.device, weights_only=True)
        cfg = GridConfig(**saved["config"])
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, TypeError):
        raise VqartError(f"{path} is unreadable or was made by another version of vqart; retrain it with "
                         f"`{retrain}`") from None
    if saved.get("format") != version:
        raise VqartError(f"{path} was made by another version of vqart; retrain it with `{retrain}`")
    if (cfg.codebook_size, cfg.levels, cfg.height, cfg.width) != (run.model.codebook_size, run.model.levels, *run.grid_size):
        raise VqartError(f"{path} was trained for another model shape; retrain it with `{retrain}`")
    if saved.get("vq_fingerprint") != model_fingerprint(run):
        log.warning("note: %s was trained on another checkpoint of this run; `%s` retrains it", path, retrain)
    return {**saved, "config": cfg}


def train_prior(
    run: Run,
    minutes: float = 1.5,
    *,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    lr: float = 6e-3,
    steps: int = MOST_STEPS,
    on_step: Callable[[float, float], None] | None = None,
    **shape: int,
) -> dict:
    """Train the spatial prior on the run's training codes, save it, return its figures on the test frames.

    Sampling and scoring then decode in the fewest steps, up to `steps`, that cost no bits on the select frames
    (fewest_steps). `shape` overrides GridConfig's sizes (dim, depth, heads, depth_layers); `on_step(elapsed,
    loss)` reports.
    """
    run.require_codes("a prior")
    if not minutes > 0:
        raise VqartError(f"--minutes must be > 0, got {minutes}")
    cfg = GridConfig(run.model.codebook_size, run.model.levels, *run.grid_size, **shape)
    if cfg.dim % cfg.heads:
        raise VqartError(f"the prior's dim ({cfg.dim}) must be a multiple of its heads ({cfg.heads})")
    split = run.split()
    tokens = {part: encode_tokens(run, split.frames(part)) for part in ("train", "select", "test")}
    labels = {part: torch.from_numpy(split.labels(part)).to(run.device) for part in ("train", "select", "test")}
    train, select = tokens["train"], tokens["select"]
    torch.manual_seed(seed)
    model = SpatialPrior(cfg, list(split.sketches)).to(run.device)
    counts = torch.bincount(labels["train"], minlength=len(model.sketches)).double() + 1
    model.label_logp.copy_((counts / counts.sum()).log())
    spread = lambda n: tuple(t[:: max(1, len(select) // n)] for t in (select, labels["select"]))
    probe = spread(48)  # scoring costs `steps` passes: a spread-out few select grids (with their labels) suffice

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(train), (batch_size,), device=run.device, generator=generator)
        return model.loss(train[idx], labels["train"][idx], generator=generator)

    history = fit(model, batch_loss, lambda: float(model.bits(*probe, steps=steps).sum()), seconds=minutes * 60,
                  lr=lr, seed=seed, device=run.device, on_step=on_step)
    chooser = spread(256)
    steps = fewest_steps(lambda s: float(model.bits(*chooser, steps=s).sum()), steps)
    held = "test" if len(tokens["test"]) else "select"  # every test frame a twin: report on select, and say so
    held_out = tokens[held]
    metrics = {
        **bits_report(model.bits(held_out, labels[held], steps=steps),
                      unigram_bits(train, held_out, cfg.codebook_size), len(held_out), model.grid.cells),
        "baseline": "unigram (one code histogram per level)",
        "held_out": held,
        "scored": "sketch, then frame given sketch (the sketch's bits in the first level)",
        "eval_steps": steps,
        "train_steps": history["steps"],
        "final_loss": float(np.mean(history["loss"][-50:])) if history["loss"] else None,
        "params": sum(p.numel() for p in model.parameters()),
        "train_frames": len(train),
        "held_out_frames": len(held_out),
        "sketches": model.sketches,
        "minutes": minutes,
        "seed": seed,
        "config": asdict(cfg),
    }
    save_model(run, model, cfg, PRIOR_FILE, SPATIAL_FORMAT, sketches=model.sketches)
    write_json(run.path / METRICS_FILE, metrics)
    return metrics


def spatial_steps(run: Run) -> int:
    """The decoding steps the run's spatial prior was chosen and scored with (MOST_STEPS for one from before)."""
    try:
        return int(json.loads((run.path / METRICS_FILE).read_text())["eval_steps"])
    except (OSError, ValueError, KeyError):
        return MOST_STEPS


def load_prior(run: Run) -> SpatialPrior | None:
    """The spatial prior stored in the run folder (eval mode, on the run's device), or None when none was trained."""
    retrain = f"vqart prior {run.path}"
    saved = read_model(run, PRIOR_FILE, retrain, SPATIAL_FORMAT)
    if saved is None:
        return None
    try:
        model = SpatialPrior(saved["config"], list(saved["sketches"])).to(run.device)
        model.load_state_dict(saved["state"])
    except (RuntimeError, KeyError):
        raise VqartError(f"{run.path / PRIOR_FILE} was made by another version of vqart; retrain it with `{retrain}`") from None
    return model.eval()
