"""The training loop: schedules, NaN guard, checkpoints, metrics, previews, Ctrl-C and resume."""

from __future__ import annotations

import copy
import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from vqart import __version__
from vqart.atomic import write_json, write_text
from vqart.checkpoint import load_checkpoint, load_weights, save_checkpoint
from vqart.config import Config, config_from_dict, load_config
from vqart.data import load_frames, split_frames
from vqart.device import autocast_dtype, describe, pick_device
from vqart.errors import VqartError
from vqart.metrics import edge_l1, evaluate, perplexity
from vqart.model.vqvae import VQVAE
from vqart.plots import codebook_usage, preview_grid, save_png, training_curve

PREVIEW_FRAMES = 8
_EPOCH_SUMS = ("loss", "recon", "commit", "edge", "images", "steps", "skipped")


@dataclass
class TrainState:
    """Loop counters that a resume must restore besides weights, optimizer and RNG."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    batch: int = 0  # batches done in the unfinished epoch (non-zero after a mid-epoch Ctrl-C)
    elapsed: float = 0.0  # wall-clock seconds of training, validation included, over all sessions
    best_val: float = math.inf
    bad_epochs: int = 0
    lr_scale: float = 1.0  # halved each time the NaN guard restores the last good state
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_EPOCH_SUMS, 0.0))
    recoveries_at_epoch_start: int = 0


def lr_at(cfg: Config, step: int, progress: float) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to 1% of lr as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, cfg.train.warmup_steps))
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
        train_cfg = {**saved["train"], **{k: v for k, v in overrides.items() if v is not None}}
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
    console: Console | None = None,
) -> Path:
    """Train a VQ-VAE on the frames under `data` into the run folder `out`; return the run folder."""
    console = console or Console(stderr=True)
    out = Path(out) if out is not None else Path("runs") / datetime.now().strftime("run-%Y%m%d-%H%M%S")
    cfg, saved = _resolve_config(out, resume, force, config, {"epochs": epochs, "minutes": minutes, "seed": seed})
    data_dir = Path(data) if data is not None else Path(saved["data"]) if saved else Path("data")
    dev = pick_device(device)
    dtype = autocast_dtype(dev, cfg.train.precision)

    sketches = load_frames(data_dir)
    train_frames, val_frames = split_frames(sketches, cfg.train.val_fraction, cfg.train.val_segments, cfg.train.val_gap)
    frame_size = tuple(int(s) for s in train_frames.shape[1:])
    torch.manual_seed(cfg.train.seed)
    model = VQVAE(cfg.model).to(dev)
    model.check_size(*frame_size)
    if saved and tuple(saved["frame_size"]) != frame_size:
        raise VqartError(f"{data_dir} holds {frame_size[1]}x{frame_size[0]} frames but the run was trained on "
                         f"{saved['frame_size'][1]}x{saved['frame_size'][0]}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    shuffle = torch.Generator().manual_seed(cfg.train.seed)
    state = TrainState()
    rows: list[dict[str, Any]] = []
    if resume:
        ckpt = load_checkpoint(out / "checkpoints" / "last.pt", map_location=dev)
        load_weights(model, ckpt["model"], out / "checkpoints" / "last.pt")
        optimizer.load_state_dict(ckpt["optimizer"])
        state = TrainState(**ckpt["state"])
        shuffle.set_state(ckpt["shuffle_rng"])
        torch.set_rng_state(ckpt["rng"])
        if dev.type == "cuda" and "cuda_rng" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng"])
        metrics_file = out / "metrics.jsonl"
        if metrics_file.is_file():
            rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    run_config = {
        **cfg.to_dict(),
        "data": str(data_dir.resolve()),
        "frame_size": list(frame_size),
        "sketches": {name: len(frames) for name, frames in sketches.items()},
        "split": {"train": len(train_frames), "val": len(val_frames)},
        "vqart_version": __version__,
    }
    if force and not resume:
        shutil.rmtree(out, ignore_errors=True)  # checked above to be a run folder
    write_json(out / "config.json", run_config)
    console.print(f"[bold]vqart train[/] -> {out}  ({describe(dev, dtype)})")
    console.print(
        f"{len(sketches)} sketches, {len(train_frames)} train / {len(val_frames)} val frames at "
        f"{frame_size[1]}x{frame_size[0]}; {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{cfg.model.codebook_size} codes x {cfg.model.code_dim} dims x {cfg.model.levels} level(s)"
    )
    loop = _Loop(cfg, model, optimizer, shuffle, state, rows, dev, dtype, out, train_frames, val_frames, console)
    if resume:
        loop.epoch_counts.copy_(ckpt["epoch_counts"])
    with _catch_ctrl_c() as stop:
        loop.run(stop)
    return out


class _Loop:
    """One training session: owns the mutable pieces so each phase is a small method."""

    def __init__(self, cfg, model, optimizer, shuffle, state, rows, device, dtype, out, train_frames, val_frames, console):
        self.cfg, self.model, self.optimizer, self.shuffle, self.state = cfg, model, optimizer, shuffle, state
        self.rows, self.device, self.dtype, self.out, self.console = rows, device, dtype, out, console
        self.train_frames = torch.from_numpy(train_frames)
        self.val_frames = val_frames
        self.preview_idx = np.linspace(0, len(val_frames) - 1, min(PREVIEW_FRAMES, len(val_frames))).astype(int)
        self.steps_per_epoch = max(1, len(train_frames) // cfg.train.batch_size)
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        self.budget = cfg.train.minutes * 60.0 if cfg.train.minutes else math.inf
        self.good = self._snapshot()
        self.nan_streak = 0
        self.clock = time.perf_counter()
        self.epoch_counts = torch.zeros(cfg.model.levels, cfg.model.codebook_size, dtype=torch.long, device=device)

    # -- state -------------------------------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        """In-memory copy of weights and optimizer: the last good state the NaN guard returns to."""
        return copy.deepcopy({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()})

    def _recoveries(self) -> int:
        """Dead codes re-seeded so far, over all levels."""
        return int(sum(layer.recoveries for layer in self.model.quantizer.layers))

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

    def _tick(self) -> None:
        """Add the wall time since the last tick to the run's elapsed time."""
        now = time.perf_counter()
        self.state.elapsed += now - self.clock
        self.clock = now

    def _progress(self) -> float:
        """Fraction of the training done, by steps or by the wall-clock budget, whichever is further."""
        return max(self.state.step / self.total_steps, self.state.elapsed / self.budget)

    # -- one step ----------------------------------------------------------------------------------------------
    def _step(self, x: torch.Tensor, beta: float) -> dict[str, float] | None:
        """One optimizer step on a batch; None when the loss or gradients are not finite (step skipped)."""
        tc = self.cfg.train
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.cfg, self.state.step, self._progress()) * self.state.lr_scale
        with torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            out = self.model(x)
        recon = out.recon.float()
        mse = F.mse_loss(recon, x)
        edge = edge_l1(recon, x)
        loss = mse + tc.edge_weight * edge + beta * out.commit
        if not torch.isfinite(loss):
            return None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        if not torch.isfinite(norm):
            return None
        self.optimizer.step()
        self.state.step += 1
        self.epoch_counts += out.counts
        counts = out.counts[0]
        return {
            "loss": loss.item(), "recon": mse.item(), "commit": out.commit.item(), "edge": edge.item(),
            "perplexity": perplexity(counts), "active": int((counts > 0).sum()),
        }

    def _guard(self) -> None:
        """Count a skipped step; after nan_limit in a row, go back to the last good state with a lower lr."""
        self.state.sums["skipped"] += 1
        self.nan_streak += 1
        if self.nan_streak >= self.cfg.train.nan_limit:
            self.model.load_state_dict(self.good["model"])
            self.optimizer.load_state_dict(self.good["optimizer"])
            self.state.lr_scale *= 0.5
            self.nan_streak = 0
            self.console.print(f"[yellow]non-finite losses: restored the last good state, lr scale {self.state.lr_scale:g}")

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Train until epochs, the time budget or patience run out; on Ctrl-C save a resumable checkpoint."""
        tc, state = self.cfg.train, self.state
        columns = (TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as bar:
            task = bar.add_task("train", total=self.steps_per_epoch, epoch=state.epoch + 1, info="")
            while state.epoch < tc.epochs:
                shuffle_state = self.shuffle.get_state()
                order = torch.randperm(len(self.train_frames), generator=self.shuffle)
                bar.reset(task, total=self.steps_per_epoch, completed=state.batch, epoch=state.epoch + 1, info="")
                if state.batch == 0:
                    state.recoveries_at_epoch_start = self._recoveries()
                started, start_images = time.perf_counter(), state.sums["images"]
                out_of_time = False
                while state.batch < self.steps_per_epoch and not out_of_time:
                    if stop.is_set():
                        self._interrupt(shuffle_state)
                    idx = order[state.batch * tc.batch_size : (state.batch + 1) * tc.batch_size]
                    x = self.train_frames[idx].to(self.device)[:, None].float() / 255.0
                    result = self._step(x, beta_at(self.cfg, state.epoch + state.batch / self.steps_per_epoch))
                    self._tick()
                    state.batch += 1
                    if result is None:
                        self._guard()
                    else:
                        self.nan_streak = 0
                        for key in ("loss", "recon", "commit", "edge"):
                            state.sums[key] += result[key]
                        state.sums["steps"] += 1
                        state.sums["images"] += len(x)
                        bar.update(task, completed=state.batch, info=(
                            f"loss {result['loss']:.4f}  ppl {result['perplexity']:.0f}  active {result['active']}"))
                    out_of_time = state.elapsed >= self.budget
                if stop.is_set():
                    self._interrupt(shuffle_state)
                seconds = time.perf_counter() - started
                self._tick()
                done = self._end_epoch(seconds, state.sums["images"] - start_images)
                if done or out_of_time:
                    break
        if self.rows:
            best = min(self.rows, key=lambda r: r["val_loss"])
            self.console.print(
                f"done: {len(self.rows)} epochs in {state.elapsed / 60:.1f} min; best epoch {best['epoch']}: "
                f"val PSNR {best['val_psnr']:.2f} dB, perplexity {best['perplexity']:.1f}, "
                f"{best['active_codes']}/{self.cfg.model.codebook_size} codes active"
            )

    def _end_epoch(self, seconds: float, images: float) -> bool:
        """Validate, log, checkpoint, preview; return True when training should stop."""
        tc, state = self.cfg.train, self.state
        val = evaluate(self.model, self.val_frames, self.device, self.dtype)
        steps = max(1.0, state.sums["steps"])
        val_loss = val["mse"] + tc.edge_weight * val["edge"]
        row = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "train_loss": state.sums["loss"] / steps,
            "train_recon": state.sums["recon"] / steps,
            "train_commit": state.sums["commit"] / steps,
            "train_edge": state.sums["edge"] / steps,
            "val_loss": val_loss,
            "val_mse": val["mse"],
            "val_psnr": val["psnr"],
            "val_ssim": val["ssim"],
            "val_commit": val["commit"],
            "perplexity": val["perplexity"],
            "active_codes": val["active_codes"],
            "dead_codes": int((self.epoch_counts == 0).sum()),  # codes no training batch of this epoch used
            "recoveries": self._recoveries() - state.recoveries_at_epoch_start,
            "skipped_steps": int(state.sums["skipped"]),
            "lr": self.optimizer.param_groups[0]["lr"],
            "beta": beta_at(self.cfg, state.epoch + 1),
            "images_per_s": images / max(seconds, 1e-9),
            "seconds": seconds,
            "elapsed": state.elapsed,
        }
        self.rows.append(row)
        write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows))
        state.epoch += 1
        state.batch = 0
        state.sums = dict.fromkeys(_EPOCH_SUMS, 0.0)
        self.epoch_counts.zero_()
        finite = bool(np.isfinite(val_loss))
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
        finished = (state.epoch >= tc.epochs or state.bad_epochs >= tc.patience
                    or state.elapsed >= self.budget or self._progress() >= 1.0)
        if finished or state.epoch % tc.preview_every == 0:
            self._pictures(val)
        self.console.print(
            f"epoch {row['epoch']:3d}  train {row['train_loss']:.4f}  val mse {row['val_mse']:.5f} "
            f"psnr {row['val_psnr']:.2f}  ppl {row['perplexity']:.1f}  active {row['active_codes']}/"
            f"{self.cfg.model.codebook_size}  revived {row['recoveries']}  {row['images_per_s']:.0f} img/s"
        )
        if state.bad_epochs >= tc.patience:
            self.console.print(f"early stop: no better validation loss for {tc.patience} epochs")
        return finished

    def _pictures(self, val: dict[str, Any]) -> None:
        """Preview grid for this epoch, training curve and codebook usage."""
        originals = self.val_frames[self.preview_idx]
        with torch.no_grad():
            self.model.eval()
            x = torch.from_numpy(originals).to(self.device)[:, None].float() / 255.0
            recon = self.model(x).recon.float().clamp(0, 1)
            self.model.train()
        recon_u8 = (recon[:, 0] * 255).round().to(torch.uint8).cpu().numpy()
        save_png(self.out / "previews" / f"epoch_{self.state.epoch:04d}.png", preview_grid(originals, recon_u8))
        training_curve(self.rows, self.out / "training_curve.png")
        codebook_usage(val["usage"], self.out / "codebook_usage.png")

    def _interrupt(self, shuffle_state: torch.Tensor) -> None:
        """Save a checkpoint that resumes exactly at this step, then stop."""
        save_checkpoint(self.out / "checkpoints" / "last.pt", self._checkpoint(shuffle_state))
        self.console.print(f"[yellow]interrupted at epoch {self.state.epoch + 1}, step {self.state.step}; "
                           f"continue with: vqart train --out {self.out} --resume")
        raise KeyboardInterrupt
