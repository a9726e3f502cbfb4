"""The training loop: schedules, NaN guard, checkpoints, controls, Ctrl-C and resume; observers watch it.

`Trainer.run` reads top to bottom: each epoch draws a shuffle, each step first applies any controls (pause,
beta, learning-rate scale, stop, re-seed) and saves a checkpoint when one is due, then takes one optimizer
step; each epoch ends with validation on the "select" frames. What happens is published to observers
(vqart.observers): the run folder's files, the console, the live view.
"""

from __future__ import annotations

import copy
import json
import math
import queue
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vqart import __version__
from vqart.atomic import write_json
from vqart.checkpoint import load_checkpoint, load_weights, save_checkpoint
from vqart.config import Config, TrainConfig, config_from_dict, load_config
from vqart.controls import Control
from vqart.data import Split, load_frames, split_frames
from vqart.device import autocast_dtype, pick_device, place
from vqart.errors import VqartError
from vqart.metrics import edge_l1, evaluate
from vqart.model.vqvae import VAE, VQVAE, build_model
from vqart.observers import Observer, RunFolder

_EPOCH_SUMS = ("loss", "recon", "reg", "edge", "images", "steps", "skipped")


@dataclass
class TrainState:
    """Loop counters that a resume must restore besides weights, optimizer and RNG."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batch: int = 0  # batches done in the unfinished epoch (non-zero after a mid-epoch stop)
    elapsed: float = 0.0  # seconds of training, validation included, over all sessions; pauses excluded
    budget: float = math.inf  # seconds this run may train for, over all sessions (--minutes)
    warm_start: int = 0  # the step the learning-rate warm-up last began at (a resume past the budget re-warms)
    best_val: float = math.inf
    bad_epochs: int = 0
    lr_scale: float = 1.0  # halved each time the NaN guard restores the last good state
    lr_user: float = 1.0  # the live view's learning-rate scale, on top of lr_scale
    beta_override: float | None = None  # the live view's commitment weight, replacing the warm-up schedule
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_EPOCH_SUMS, 0.0))
    recoveries_at_epoch_start: int = 0
    epoch_started_at: float = 0.0  # `elapsed` when the unfinished epoch began


@dataclass
class Step:
    """One optimizer step as observers see it (plain floats; `counts` is the batch's per-level code use)."""

    step: int
    epoch: float  # fractional: 3.5 is half-way through the fourth epoch
    elapsed: float
    lr: float
    beta: float
    loss: float
    recon: float
    reg: float
    edge: float
    counts: torch.Tensor | None  # (L, K) for a VQ-VAE, None for a VAE


def lr_at(cfg: Config, step: int, progress: float, warm_start: int = 0) -> float:
    """Linear warm-up over warmup_steps from `warm_start`, then cosine decay to 1% of lr as progress goes 0 -> 1."""
    warm = min(1.0, (step - warm_start + 1) / max(1, cfg.train.warmup_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.train.lr * warm * (0.01 + 0.99 * cosine)


def beta_at(cfg: Config, epoch: float) -> float:
    """Commitment weight, warmed up linearly from beta_start to beta_end over beta_warmup_epochs."""
    t = min(1.0, epoch / max(1e-9, cfg.train.beta_warmup_epochs))
    return cfg.train.beta_start + (cfg.train.beta_end - cfg.train.beta_start) * t


@contextmanager
def _catch_ctrl_c() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C into a flag the loop checks between steps (a second one interrupts at once)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        flag.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class Trainer:
    """One training session over a split: model, optimizer, schedules and state, published to observers.

    Other threads talk to it only through `controls` (a queue of vqart.controls.Control), applied between steps.
    """

    def __init__(self, cfg: Config, model: VQVAE | VAE, split: Split, out: Path, *, device: torch.device,
                 dtype: torch.dtype | None = None, observers: Sequence[Observer] = ()):
        self.cfg, self.model, self.split, self.out = cfg, model, split, out
        self.device, self.dtype, self.observers = device, dtype, list(observers)
        self.train_frames = torch.from_numpy(split.frames("train"))
        self.select_frames = split.frames("select")
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.shuffle = torch.Generator().manual_seed(cfg.train.seed)
        self.state = TrainState(budget=cfg.train.minutes * 60.0 if cfg.train.minutes else math.inf)
        self.steps_per_epoch = max(1, len(self.train_frames) // cfg.train.batch_size)
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        shape = (model.levels, model.codebook_size) if model.quantized else (1, 1)
        self.epoch_counts = torch.zeros(shape, dtype=torch.long, device=device)
        self.controls: queue.Queue[Control] = queue.Queue()
        self.paused = False
        self.stop_reason: str | None = None  # "interrupt" (Ctrl-C) or "stop" (the live view's stop)
        self.rows: list[dict[str, Any]] = []  # one per finished epoch, as metrics.jsonl holds them
        self.last_val: dict[str, Any] = {}  # the latest validation measures (usage histogram included)
        self.last_latents: torch.Tensor | None = None  # the latest batch's encoder outputs (live view)
        self.last_batch: torch.Tensor | None = None  # ... and the indices of its training frames
        self.good = self._snapshot()
        self.nan_streak = 0
        self.clock = time.perf_counter()
        self.checkpointed_at = 0.0
        self._recoveries_seen = self._recoveries()
        self._recoveries_checked = 0.0

    # -- state -------------------------------------------------------------------------------------------------
    def restore(self, ckpt: dict[str, Any], more_minutes: float | None) -> None:
        """Continue from a checkpoint; `more_minutes` (resume --minutes) trains that much longer than so far."""
        load_weights(self.model, ckpt["model"], self.out / "checkpoints" / "last.pt")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        known = {f.name for f in fields(TrainState)}
        self.state = TrainState(**{k: v for k, v in ckpt["state"].items() if k in known})
        self.shuffle.set_state(ckpt["shuffle_rng"])
        torch.set_rng_state(ckpt["rng"])
        if self.device.type == "cuda" and "cuda_rng" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng"])
        self.epoch_counts.copy_(ckpt["epoch_counts"].reshape(self.epoch_counts.shape))
        if more_minutes is not None:
            # The cosine is refitted to the run's whole time: an interrupted run carries on along its curve, and
            # a finished one warms up again to the curve's value at its new position (a warm restart).
            if self.state.elapsed >= self.state.budget:
                self.state.warm_start = self.state.step
            self.state.budget = self.state.elapsed + more_minutes * 60.0
            self.state.bad_epochs = 0
        metrics = self.out / "metrics.jsonl"
        if metrics.is_file():
            self.rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        self.checkpointed_at = self.state.elapsed
        self.good = self._snapshot()
        self._recoveries_seen = self._recoveries()

    def _snapshot(self) -> dict[str, Any]:
        """In-memory copy of weights and optimizer: the last good state the NaN guard returns to."""
        return copy.deepcopy({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()})

    def _recoveries(self) -> int:
        """Dead codes re-seeded so far, over all levels."""
        if not self.model.quantized:
            return 0
        return self.model.quantizer.recoveries

    def _checkpoint(self, shuffle_state: torch.Tensor) -> dict[str, Any]:
        """Everything a resume needs, as tensors and plain values only."""
        ckpt = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": asdict(self.state),
            "config": self.cfg.to_dict(),
            "rng": torch.get_rng_state(),
            "shuffle_rng": shuffle_state,
            "epoch_counts": self.epoch_counts,
            "vqart_version": __version__,
        }
        if self.device.type == "cuda":
            ckpt["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return ckpt

    def save_resumable(self, shuffle_state: torch.Tensor) -> None:
        """Write last.pt so that a resume continues at exactly this step."""
        save_checkpoint(self.out / "checkpoints" / "last.pt", self._checkpoint(shuffle_state))
        self.checkpointed_at = self.state.elapsed

    def _tick(self) -> None:
        """Add the wall time since the last tick to the run's elapsed time."""
        now = time.perf_counter()
        self.state.elapsed += now - self.clock
        self.clock = now

    def progress(self) -> float:
        """Fraction of the training done, by steps or by the wall-clock budget, whichever is further."""
        return max(self.state.step / self.total_steps, self.state.elapsed / self.state.budget)

    def beta(self) -> float:
        """The commitment weight now: the live view's override, else the warm-up schedule."""
        if self.state.beta_override is not None:
            return self.state.beta_override
        return beta_at(self.cfg, self.state.epoch + self.state.batch / self.steps_per_epoch)

    def lr(self) -> float:
        """The learning rate now: the schedule times the NaN guard's and the live view's scales."""
        s = self.state
        return lr_at(self.cfg, s.step, self.progress(), s.warm_start) * s.lr_scale * s.lr_user

    def publish(self, hook: str, *args: Any) -> None:
        """Call `hook` (on_start, on_step, on_epoch, on_event, on_end) on every observer."""
        for observer in self.observers:
            getattr(observer, hook)(self, *args)

    def event(self, kind: str, /, **details: Any) -> None:
        """Publish a moment worth marking on the curves (k-means init, recoveries, controls, NaN restores)."""
        self.publish("on_event", {"event": kind, **details, "step": self.state.step, "time": time.time()})

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self, interrupt: threading.Event | None = None) -> None:
        """Train until epochs, the time budget or patience run out, or a stop or Ctrl-C (which save a checkpoint)."""
        interrupt = interrupt or threading.Event()
        state = self.state
        self.publish("on_start")
        while not self.finished():
            shuffle_state = self.shuffle.get_state()
            order = torch.randperm(len(self.train_frames), generator=self.shuffle)
            if state.batch == 0:
                self._tick()  # the last epoch's validation and pictures count as training time, not as this epoch's
                if self.finished():  # they spent the rest of the time budget: no empty epoch, and last.pt says so
                    self.save_resumable(shuffle_state)
                    break
                state.recoveries_at_epoch_start, state.epoch_started_at = self._recoveries(), state.elapsed
            while state.batch < self.steps_per_epoch and state.elapsed < state.budget:
                self._between_steps(interrupt, shuffle_state)
                if self.stop_reason:
                    break
                self._train_step(order)
            if self.stop_reason:
                self.save_resumable(shuffle_state)
                break
            self._end_epoch()
        self.publish("on_end")

    def finished(self) -> bool:
        """True once the run has nothing left to do: epochs, budget or patience spent, or stopped."""
        s, tc = self.state, self.cfg.train
        return bool(self.stop_reason) or s.epoch >= tc.epochs or s.bad_epochs >= tc.patience or self.progress() >= 1.0

    def _between_steps(self, interrupt: threading.Event, shuffle_state: torch.Tensor) -> None:
        """Apply waiting controls (waiting here while paused, which does not count as training time), notice
        Ctrl-C, and write a checkpoint when checkpoint_seconds have passed since the last."""
        self._apply_controls()
        while self.paused and not self.stop_reason and not interrupt.is_set():
            self._apply_controls(wait=0.1)
            self.clock = time.perf_counter()
        if interrupt.is_set():
            self.stop_reason = "interrupt"
        if not self.stop_reason and self.state.elapsed - self.checkpointed_at >= self.cfg.train.checkpoint_seconds:
            self.save_resumable(shuffle_state)

    def _apply_controls(self, wait: float = 0.0) -> None:
        """Apply every queued control (blocking up to `wait` seconds for the first) and publish each."""
        try:
            control = self.controls.get(timeout=wait) if wait else self.controls.get_nowait()
        except queue.Empty:
            return
        while True:
            old, new = self._apply(control)
            self.event("control", name=control.name, old=old, new=new, id=control.id)
            try:
                control = self.controls.get_nowait()
            except queue.Empty:
                return

    def _apply(self, control: Control) -> tuple[Any, Any]:
        """Change the training as `control` says; returns the (old, new) value of what it changed."""
        s = self.state
        if control.name == "beta":
            old, s.beta_override = self.beta(), control.value
            return old, control.value
        if control.name == "lr_scale":
            old, s.lr_user = s.lr_user, control.value
            return old, control.value
        if control.name in ("pause", "resume"):
            old, self.paused = self.paused, control.name == "pause"
            return old, self.paused
        if control.name == "stop":
            self.stop_reason = "stop"
            return False, True
        if self.model.quantized:  # reseed: the next step re-seeds every code it leaves unused
            self.model.quantizer.request_reseed()
        return None, self.model.quantized

    def _train_step(self, order: torch.Tensor) -> None:
        """One batch: an optimizer step, or a skipped one when the loss or gradients are not finite."""
        tc, state = self.cfg.train, self.state
        idx = order[state.batch * tc.batch_size : (state.batch + 1) * tc.batch_size]
        x = self.train_frames[idx].to(self.device)[:, None].float() / 255.0
        beta, lr = self.beta(), self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        first = self.model.quantized and state.step == 0 and not self.model.quantizer.initialized
        with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            out = self.model(x)
        recon = out.recon.float()
        mse, edge = F.mse_loss(recon, x), edge_l1(recon, x)
        loss = mse + tc.edge_weight * edge + (beta if self.model.quantized else self.cfg.model.kl_weight) * out.reg
        state.batch += 1
        norm = None
        if torch.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self._tick()
        if norm is None or not torch.isfinite(norm):
            self._guard()
            return
        self.optimizer.step()
        self.nan_streak = 0
        state.step += 1
        values = torch.stack([loss, mse, out.reg.float(), edge]).tolist()  # one device sync for all four
        for key, value in zip(("loss", "recon", "reg", "edge"), values):
            state.sums[key] += value
        state.sums["steps"] += 1
        state.sums["images"] += len(x)
        if out.counts is not None:
            self.epoch_counts += out.counts
        self.last_latents, self.last_batch = out.latents, idx
        if first:
            self.event("kmeans_init", levels=self.model.levels)
        self._note_recoveries()
        epoch = state.epoch + state.batch / self.steps_per_epoch
        self.publish("on_step", Step(state.step, epoch, state.elapsed, lr, beta, *values, out.counts))

    def _note_recoveries(self) -> None:
        """Publish re-seeded dead codes as an event, at most once a second (early on it happens every step)."""
        now = time.monotonic()
        if not self.model.quantized or now - self._recoveries_checked < 1.0:
            return
        self._recoveries_checked = now
        total = self._recoveries()
        if total > self._recoveries_seen:
            self.event("recovery", codes=total - self._recoveries_seen)
            self._recoveries_seen = total

    def _guard(self) -> None:
        """Count a skipped step; after nan_limit in a row, go back to the last good state with a lower lr."""
        self.state.sums["skipped"] += 1
        self.nan_streak += 1
        if self.nan_streak >= self.cfg.train.nan_limit:
            self.model.load_state_dict(self.good["model"])
            self.optimizer.load_state_dict(self.good["optimizer"])
            self.state.lr_scale *= 0.5
            self.nan_streak = 0
            self.event("nan_restore", lr_scale=self.state.lr_scale)

    def _end_epoch(self) -> None:
        """Validate on the select frames, publish the epoch's row, checkpoint (best by select loss)."""
        tc, state = self.cfg.train, self.state
        self._tick()
        self.last_val = val = evaluate(self.model, self.select_frames, self.device, self.dtype)
        val_loss = val["mse"] + tc.edge_weight * val["edge"]
        row = self._row(val, val_loss)
        state.epoch += 1
        state.batch = 0
        state.sums = dict.fromkeys(_EPOCH_SUMS, 0.0)
        self.epoch_counts.zero_()
        finite = math.isfinite(val_loss)
        if finite:
            self.good = self._snapshot()
        improved = finite and val_loss < state.best_val
        state.best_val = val_loss if improved else state.best_val
        state.bad_epochs = 0 if improved else state.bad_epochs + 1
        ckpt = self._checkpoint(self.shuffle.get_state())
        if improved:
            save_checkpoint(self.out / "checkpoints" / "best.pt", {**ckpt, "metrics": row})
        if finite:
            save_checkpoint(self.out / "checkpoints" / "last.pt", ckpt)
            self.checkpointed_at = state.elapsed
        self.rows.append(row)
        self.publish("on_epoch", row)

    def _row(self, val: dict[str, Any], val_loss: float) -> dict[str, Any]:
        """The epoch's line of metrics.jsonl: training sums, select-frame measures, codebook health, schedules."""
        state = self.state
        steps = max(1.0, state.sums["steps"])
        seconds = state.elapsed - state.epoch_started_at
        row = {
            "epoch": state.epoch + 1, "step": state.step,
            **{f"train_{k}": state.sums[k] / steps for k in ("loss", "recon", "edge")},
            "train_commit" if self.model.quantized else "train_kl": state.sums["reg"] / steps,
            "val_loss": val_loss, "val_mse": val["mse"], "val_psnr": val["psnr"], "val_ssim": val["ssim"],
            "skipped_steps": int(state.sums["skipped"]), "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": state.sums["images"] / max(seconds, 1e-9), "seconds": seconds, "elapsed": state.elapsed,
        }
        if self.model.quantized:
            row.update({
                "val_commit": val["commit"], "perplexity": val["perplexity"], "active_codes": val["active_codes"],
                "perplexity_levels": val["perplexity_levels"], "active_levels": val["active_levels"],
                # codes no training batch of this epoch used, over all levels
                "dead_codes": int((self.epoch_counts == 0).sum()),
                "recoveries": self._recoveries() - state.recoveries_at_epoch_start, "beta": self.beta(),
            })
        return row

    def reconstruct(self, frames: Any) -> Any:
        """uint8 (N, H, W) frames through the model as it is now (eval mode): uint8 reconstructions."""
        with torch.no_grad():
            self.model.eval()
            x = torch.from_numpy(frames).to(self.device)[:, None].float() / 255.0
            recon = self.model(x).recon.float().clamp(0, 1)
            self.model.train()
        return (recon[:, 0] * 255).round().to(torch.uint8).cpu().numpy()

    def test_report(self) -> dict[str, Any] | None:
        """The best checkpoint measured on the "test" frames, which chose nothing; None when there are none."""
        test = self.split.frames("test")
        best = self.out / "checkpoints" / "best.pt"
        if not len(test) or not best.is_file():
            return None
        ckpt = load_checkpoint(best, map_location=self.device)
        model = place(build_model(self.cfg.model), self.device)
        load_weights(model, ckpt["model"], best)
        return {**evaluate(model, test, self.device, self.dtype), "epoch": ckpt["metrics"]["epoch"]}


def _resolve_config(
    out: Path, resume: bool, force: bool, config: Config | str | Path | None, overrides: dict[str, Any]
) -> tuple[Config, dict[str, Any] | None]:
    """The effective config: the run's own when resuming, else defaults < TOML file < CLI options."""
    if resume:
        saved_file = out / "config.json"
        if not (out / "checkpoints" / "last.pt").is_file() or not saved_file.is_file():
            raise VqartError(f"nothing to resume in {out}: no checkpoints/last.pt; start a new run without --resume")
        if config is not None:
            raise VqartError("--config cannot change a run being resumed; resume without --config")
        saved = json.loads(saved_file.read_text())
        known = {f.name for f in fields(TrainConfig)}  # settings older versions had and this one dropped
        train_cfg = {k: v for k, v in saved["train"].items() if k in known}
        train_cfg.update({k: v for k, v in overrides.items() if v is not None and k != "minutes"})
        return config_from_dict({"model": saved["model"], "train": train_cfg}), saved
    if out.exists() and any(out.iterdir()):
        if not force:
            raise VqartError(f"{out} already holds a run; pass --resume to continue it, --force to replace it, "
                             "or choose another --out")
        if not (out / "config.json").is_file():
            raise VqartError(f"{out} is not empty and is not a run folder; --force only replaces runs")
    if isinstance(config, Config):
        merged = config.to_dict()
        merged["train"].update({k: v for k, v in overrides.items() if v is not None})
        return config_from_dict(merged), None
    return load_config(config, **overrides), None


def train(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    config: Config | str | Path | None = None,
    epochs: int | None = None,
    minutes: float | None = None,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    seed: int | None = None,
    observers: Sequence[Observer] = (),
) -> Path:
    """Train an autoencoder on the frames under `data` into the run folder `out`; return the run folder.

    With `resume`, `minutes` is how much longer to train (the schedule is refitted to the whole run).
    """
    out = Path(out) if out is not None else Path("runs") / datetime.now().strftime("run-%Y%m%d-%H%M%S")
    cfg, saved = _resolve_config(out, resume, force, config, {"epochs": epochs, "minutes": minutes, "seed": seed})
    data_dir = Path(data) if data is not None else Path(saved["data"]) if saved else Path("data")
    dev = pick_device(device)
    split = split_frames(load_frames(data_dir), cfg.train)
    frame_size = tuple(int(s) for s in split.frames("train").shape[1:])
    torch.manual_seed(cfg.train.seed)
    model = place(build_model(cfg.model), dev)
    model.check_size(*frame_size)
    if saved and tuple(saved["frame_size"]) != frame_size:
        raise VqartError(f"{data_dir} holds {frame_size[1]}x{frame_size[0]} frames but the run was trained on "
                         f"{saved['frame_size'][1]}x{saved['frame_size'][0]}")
    trainer = Trainer(cfg, model, split, out, device=dev, dtype=autocast_dtype(dev, cfg.train.precision),
                      observers=[RunFolder(), *observers])
    if resume:
        trainer.restore(load_checkpoint(out / "checkpoints" / "last.pt", map_location=dev), minutes)
    else:
        if force:
            shutil.rmtree(out, ignore_errors=True)  # checked above to be a run folder
        write_json(out / "config.json", {
            **cfg.to_dict(), "data": str(data_dir.resolve()), "frame_size": list(frame_size),
            "sketches": {name: len(frames) for name, frames in split.sketches.items()},
            "split": split.summary(), "vqart_version": __version__,
        })
    with _catch_ctrl_c() as interrupt:
        trainer.run(interrupt)
    if trainer.stop_reason == "interrupt":
        raise KeyboardInterrupt
    return out
