"""Observers of a training session: the run folder's files and the console. The live view is a third kind.

The loop (vqart.train.Trainer) calls each hook from its own thread between steps; an observer never changes
the training (controls go through the trainer's queue instead).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vqart.atomic import atomic_path, write_text
from vqart.metrics import perplexity
from vqart.plots import codebook_usage, preview_grid, progression_sheet, save_png, training_curve

if TYPE_CHECKING:
    from vqart.train import Step, Trainer

PREVIEW_FRAMES = 8
EVENTS_FILE = "events.jsonl"


class Observer:
    """The hooks a training session publishes; override the ones you need."""

    def on_start(self, trainer: Trainer) -> None:
        """Training (or a resumed session of it) begins."""

    def on_step(self, trainer: Trainer, step: Step) -> None:
        """An optimizer step was taken."""

    def on_epoch(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """An epoch ended and was validated; `row` is its line of metrics.jsonl."""

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        """Something worth marking happened: k-means init, recoveries, a control, a NaN restore."""

    def on_end(self, trainer: Trainer) -> None:
        """The session ended: finished, stopped, interrupted or failed (trainer.stop_reason says which)."""


def preview_epoch(epoch: int) -> bool:
    """Epochs whose reconstructions are kept: 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (dense early, where most changes)."""
    while epoch % 2 == 0 and epoch > 2:
        epoch //= 2
    return epoch in (1, 2, 3)


def preview_frames(trainer: Trainer) -> np.ndarray:
    """The fixed select frames every preview, the progression and the live view reconstruct: spread over sketches."""
    frames = trainer.select_frames
    return frames[np.linspace(0, len(frames) - 1, min(PREVIEW_FRAMES, len(frames))).astype(int)]


class RunFolder(Observer):
    """Writes the run folder as training goes: metrics.jsonl, events.jsonl, previews/, progression.png, plots."""

    def on_start(self, trainer: Trainer) -> None:
        """Pick up a resumed run's events and reconstruction history."""
        self.out = trainer.out
        self.frames = preview_frames(trainer)
        events = self.out / EVENTS_FILE
        self.events = [json.loads(line) for line in events.read_text().splitlines() if line.strip()] \
            if events.is_file() else []
        history = self.out / "previews" / "progression.npz"
        self.history: dict[int, np.ndarray] = {}
        if history.is_file():
            saved = np.load(history)
            self.history = dict(zip(saved["epochs"].tolist(), saved["recons"]))

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        """Record the event in events.jsonl (rewritten whole, atomically, like metrics.jsonl)."""
        self.events.append(event)
        write_text(self.out / EVENTS_FILE, "".join(json.dumps(e) + "\n" for e in self.events))

    def on_epoch(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """Rewrite metrics.jsonl; at preview epochs, reconstruct the preview frames and redraw the pictures."""
        write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in trainer.rows))
        if preview_epoch(row["epoch"]) or trainer.finished():
            self._pictures(trainer, row["epoch"])

    def on_end(self, trainer: Trainer) -> None:
        """Make sure the last epoch is in the pictures."""
        if trainer.rows and trainer.rows[-1]["epoch"] not in self.history:
            self._pictures(trainer, trainer.rows[-1]["epoch"])

    def _pictures(self, trainer: Trainer, epoch: int) -> None:
        """Preview grid, progression, training curve and codebook usage as of `epoch`."""
        recons = trainer.reconstruct(self.frames)
        save_png(self.out / "previews" / f"epoch_{epoch:04d}.png", preview_grid(self.frames, recons))
        self.history[epoch] = recons
        epochs = sorted(self.history)
        with atomic_path(self.out / "previews" / "progression.npz") as tmp:
            np.savez_compressed(tmp, epochs=np.array(epochs), recons=np.stack([self.history[e] for e in epochs]))
        save_png(self.out / "progression.png", progression_sheet(self.frames, [self.history[e] for e in epochs], epochs))
        training_curve(trainer.rows, self.out / "training_curve.png")
        if "usage" in trainer.last_val:
            codebook_usage(trainer.last_val["usage"], self.out / "codebook_usage.png")


class ConsoleReport(Observer):
    """The command line's view: a header, a live progress bar, one line per epoch, and the final report."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self._shown = 0.0

    def on_start(self, trainer: Trainer) -> None:
        """Print what is trained on what, and start the bar."""
        from vqart.device import describe

        m, split = trainer.cfg.model, trainer.split
        shape = {"vq": f"{m.levels} residual level(s) of {m.codebook_size} codes x {m.code_dim} dims",
                 "fsq": f"{m.levels} FSQ group(s) of {m.codes_per_level} codes (levels {m.fsq_levels})",
                 "none": f"a Gaussian latent of {m.code_dim} dims (the VAE baseline)"}[m.quantizer]
        params = sum(p.numel() for p in trainer.model.parameters())
        self.console.print(f"[bold]vqart train[/] -> {trainer.out}  ({describe(trainer.device, trainer.dtype)})")
        self.console.print(
            f"{len(split.sketches)} sketches: {len(trainer.train_frames)} train / {len(trainer.select_frames)} select "
            f"/ {len(split.frames('test'))} test frames; {params:,} parameters, {shape}"
        )
        dropped = {name: d["select"] + d["test"] for name, d in split.dropped.items() if d["select"] + d["test"]}
        if dropped:
            twins = ", ".join(f"{name} {n}" for name, n in dropped.items())
            self.console.print(f"held-out frames dropped as twins of training frames: {twins}")
        for name in split.without_held_out():
            self.console.print(f"[yellow]{name} has no test frames left: it is not in the reported figures")
        columns = (TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn())
        self.progress = Progress(*columns, console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=trainer.steps_per_epoch, epoch=trainer.state.epoch + 1,
                                           info="")

    def on_step(self, trainer: Trainer, step: Step) -> None:
        """Advance the bar; refresh its numbers ten times a second (perplexity costs a little)."""
        now = time.monotonic()
        fields: dict[str, Any] = {"completed": trainer.state.batch, "epoch": trainer.state.epoch + 1}
        if now - self._shown >= 0.1:
            self._shown = now
            info = f"loss {step.loss:.4f}"
            if step.counts is not None:
                counts = step.counts[0]
                info += f"  ppl {perplexity(counts):.0f}  active {int((counts > 0).sum())}"
            fields["info"] = info
        self.progress.update(self.task, **fields)

    def on_epoch(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """One line per epoch, then the bar starts over."""
        codes = (f"ppl {row['perplexity']:.1f}  active {row['active_codes']}/{trainer.cfg.model.codes_per_level}  "
                 f"revived {row['recoveries']}  " if "perplexity" in row else "")
        self.console.print(
            f"epoch {row['epoch']:3d}  train {row['train_loss']:.4f}  select mse {row['val_mse']:.5f} "
            f"psnr {row['val_psnr']:.2f}  {codes}{row['images_per_s']:.0f} img/s"
        )
        if trainer.state.bad_epochs >= trainer.cfg.train.patience:
            self.console.print(f"early stop: no better select loss for {trainer.cfg.train.patience} epochs")
        self.progress.reset(self.task, total=trainer.steps_per_epoch, completed=0, epoch=trainer.state.epoch + 1, info="")

    def on_event(self, trainer: Trainer, event: dict[str, Any]) -> None:
        """Say what a person or the NaN guard changed."""
        if event["event"] == "control":
            self.console.print(f"control: {event['name']} {event['old']} -> {event['new']} at step {event['step']}")
        elif event["event"] == "nan_restore":
            self.console.print(f"[yellow]non-finite losses: restored the last good state, lr scale {event['lr_scale']:g}")

    def on_end(self, trainer: Trainer) -> None:
        """Stop the bar; report the best epoch on the test frames, or how to resume."""
        if self.progress is not None:
            self.progress.stop()
        s = trainer.state
        if trainer.stop_reason:
            verb = "interrupted" if trainer.stop_reason == "interrupt" else "stopped"
            self.console.print(f"[yellow]{verb} at epoch {s.epoch + 1}, step {s.step}; "
                               f"continue with: vqart train --out {trainer.out} --resume [--minutes M]")
            return
        if not trainer.rows:
            return
        self.console.print(f"done: {len(trainer.rows)} epochs in {s.elapsed / 60:.1f} min")
        report = trainer.test_report()
        if report is not None:
            codes = (f", perplexity {report['perplexity']:.1f}, {report['active_codes']}/{report['codebook_size']} "
                     "codes active (level 1)" if report["quantizer"] != "none" else "")
            self.console.print(
                f"best epoch {report['epoch']} (chosen on {len(trainer.select_frames)} select frames), on "
                f"{report['frames']} test frames: PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.3f}{codes}"
            )
