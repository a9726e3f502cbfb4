"""The live training view's observer: what the browser shows of a running training, kept small and bounded.

Scalars are sampled at most every SCALAR_SECONDS (about 10 points a second, whatever the step rate) into a ring
buffer; epoch rows and events are kept (bounded too); a heavy snapshot (the codebooks in 2-D, code usage, the
reconstructions of a fixed set of select frames, one frame's code map) is taken about once a second, less
often when taking one would cost more than HEAVY_SHARE of the training's time (a slow CPU). Every snapshot is
taken on the trainer's thread between steps, the scalars from what the step already computed, so most steps pay
nothing extra but a clock read. The server side (vqart.server.training) reads this through `history()` and
`since()`; a reader never blocks the trainer for longer than a copy.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vqart.metrics import perplexity
from vqart.observers import Observer, preview_frames

if TYPE_CHECKING:
    from vqart.train import Step, Trainer

SCALAR_SECONDS = 0.1
HEAVY_SECONDS = 1.0  # at most this often; and taking them at most HEAVY_SHARE of the training's time
HEAVY_SHARE = 0.015  # (on a 2-core CPU one takes ~20 ms: every 1.3 s; on a laptop's cores, every second)
MAX_POINTS = 10_000  # per series, on both sides: an hour of training at 10 points a second would be 36,000
MAX_EVENTS = 2_000
LATENT_SAMPLE = 256


def align(new: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """The 2x2 orthogonal map (rotation or reflection) that best lays `new` (N, 2) onto `previous` (N, 2):
    orthogonal Procrustes, so a projection's axes stay put from one update to the next."""
    if previous is None or previous.shape != new.shape:
        return np.eye(2)
    u, _, vt = torch.linalg.svd(torch.from_numpy(new.T @ previous))
    return (u @ vt).numpy()


def project(codes: np.ndarray, extra: np.ndarray | None, previous: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes (K, D) and other vectors (M, D) onto the codes' two principal axes, aligned to the last projection."""
    # torch's SVD, not numpy's: numpy's OpenBLAS starts threads of its own that spin on after the call and take
    # the cores from the trainer's next step (measured: a snapshot's step took 100 ms longer, not 25)
    mean = codes.mean(axis=0)
    _, _, vt = torch.linalg.svd(torch.from_numpy(codes - mean), full_matrices=False)
    axes = vt[:2].T.numpy()
    flat = (codes - mean) @ axes
    turn = align(flat, previous)
    return flat @ turn, None if extra is None else ((extra - mean) @ axes) @ turn


def _newer(items: deque[dict], n: int) -> list[dict]:
    """The items numbered above `n`, read from the newest end: a page's call costs what it has not seen, not the
    hour of points kept (the publisher asks ten times a second)."""
    return list(itertools.takewhile(lambda item: item["n"] > n, reversed(items)))[::-1]


class LiveView(Observer):
    """A training as the live page sees it; thread-safe readers, written by the trainer's thread only."""

    def __init__(self) -> None:
        self.trainer: Trainer | None = None
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.serial = itertools.count(1)
        self.points: deque[dict] = deque(maxlen=MAX_POINTS)  # each with a serial number "n"
        self.events: deque[dict] = deque(maxlen=MAX_EVENTS)
        self.rows: list[dict] = []
        self.heavy: dict | None = None
        self.status = "starting"  # starting | training | paused | finished | stopped | interrupted
        self.info: dict = {}
        self._last_point = self._last_heavy = 0.0
        self._heavy_every = HEAVY_SECONDS
        self._projection: dict[int, np.ndarray] = {}

    # -- the trainer's side --------------------------------------------------------------------------------------
    def on_start(self, trainer: Trainer) -> None:
        """Remember the trainer (controls go to its queue) and what the page needs to lay itself out."""
        self.trainer = trainer
        self.frames = preview_frames(trainer)
        self.labels = trainer.split.labels("train")
        model = trainer.model
        with self.changed:
            self.info = {
                "run": str(trainer.out), "quantized": model.quantized, "quantizer": trainer.cfg.model.quantizer,
                "sketches": list(trainer.split.sketches),
                "levels": model.levels if model.quantized else 0,
                "codebook_size": model.codebook_size if model.quantized else 0,
                "steps_per_epoch": trainer.steps_per_epoch, "minutes": trainer.state.budget / 60,
            }
            self.rows = list(trainer.rows)
            self.status = "training"
            self.changed.notify_all()

    def on_step(self, trainer: Trainer, step: Step) -> None:
        """Sample the scalars (at most every SCALAR_SECONDS) and, about once a second, the heavy snapshot (spaced out
        so that taking it costs at most HEAVY_SHARE of the time)."""
        now = time.monotonic()
        if now - self._last_point >= SCALAR_SECONDS:
            self._last_point = now
            point = {"step": step.step, "epoch": step.epoch, "elapsed": step.elapsed, "time": time.time(),
                     "loss": step.loss, "recon": step.recon, "reg": step.reg, "edge": step.edge, "lr": step.lr,
                     "beta": step.beta}
            if step.counts is not None:
                point.update(perplexity=perplexity(step.counts[0]), active=int((step.counts[0] > 0).sum()))
            with self.changed:
                point["n"] = next(self.serial)
                self.points.append(point)
                self.status = "paused" if trainer.paused else "training"
                self.changed.notify_all()
        if now - self._last_heavy >= self._heavy_every:
            heavy = self._heavy(trainer)
            self._last_heavy = time.monotonic()
            self._heavy_every = max(HEAVY_SECONDS, (self._last_heavy - now) / HEAVY_SHARE)
            with self.changed:
                self.heavy = heavy
                self.changed.notify_all()

    def on_epoch(self, trainer: Trainer, row: dict) -> None:
        """Keep the epoch's row (validation figures) for the curves."""
        with self.changed:
            self.rows.append({k: v for k, v in row.items() if not isinstance(v, (list, dict))})
            self.changed.notify_all()

    def on_event(self, trainer: Trainer, event: dict) -> None:
        """Keep the event; controls are also sent at once to every page (control_applied)."""
        with self.changed:
            self.events.append({**event, "n": next(self.serial)})
            self.status = "paused" if trainer.paused else self.status
            self.changed.notify_all()

    def on_end(self, trainer: Trainer) -> None:
        """The final state: the last snapshot, and how it ended."""
        heavy = self._heavy(trainer)
        with self.changed:
            self.heavy = heavy
            self.status = {"interrupt": "interrupted", "stop": "stopped"}.get(trainer.stop_reason or "", "finished")
            self.changed.notify_all()

    def _heavy(self, trainer: Trainer) -> dict:
        """Codebooks in 2-D (with encoder outputs, by sketch, on level 1), usage, reconstructions, a code map."""
        recons = trainer.reconstruct(self.frames)
        heavy: dict[str, Any] = {"step": trainer.state.step, "epoch": trainer.state.epoch,
                                 "originals": self.frames, "recons": recons, "levels": []}
        model = trainer.model
        if not model.quantized:
            return heavy
        with torch.no_grad():
            x = torch.from_numpy(self.frames[:1]).to(trainer.device)[:, None].float() / 255.0
            codes = model.quantize(model.encode(x))[1]  # (1, h, w), or (1, L, h, w) with levels
            heavy["code_map"] = (codes[0] if model.levels == 1 else codes[0, 0]).cpu().numpy()  # level 1
        latents, labels = self._latent_sample(trainer)
        counts = trainer.epoch_counts.cpu().numpy()
        for level, codes in enumerate(model.quantizer.codebooks.detach().cpu().numpy()):
            extra = latents if level == 0 else None
            flat, sample = project(codes, extra, self._projection.get(level))
            self._projection[level] = flat
            heavy["levels"].append({
                "codes": flat, "usage": counts[level], "latents": sample, "labels": labels if level == 0 else None,
            })
        return heavy

    def _latent_sample(self, trainer: Trainer) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Up to LATENT_SAMPLE encoder outputs (D,) of the last batch, and the sketch index of each."""
        z, idx = trainer.last_latents, trainer.last_batch
        if z is None or idx is None:
            return None, None
        b, d, h, w = z.shape
        image = np.repeat(self.labels[idx.numpy()], h * w)
        pick = np.random.default_rng(trainer.state.step).choice(len(image), min(LATENT_SAMPLE, len(image)), replace=False)
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)[torch.from_numpy(pick).to(z.device)]  # only the sample leaves the device
        return flat.float().cpu().numpy(), image[pick]

    # -- the readers' side --------------------------------------------------------------------------------------
    def since(self, n: int) -> tuple[list[dict], list[dict], int]:
        """Points and events with a serial number above `n`, and the newest serial number."""
        with self.lock:
            points, events = _newer(self.points, n), _newer(self.events, n)
        return points, events, max([n] + [p["n"] for p in points[-1:]] + [e["n"] for e in events[-1:]])

    def snapshot(self) -> tuple[dict, list[dict], dict | None, str]:
        """The page's layout facts, the epoch rows, the latest heavy snapshot and the status."""
        with self.lock:
            return dict(self.info), list(self.rows), self.heavy, self.status
