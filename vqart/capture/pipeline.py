"""Capturing sketches: each runs headless and deterministically in a worker process, frames go to data/<sketch>/."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import shutil
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from vqart.capture import worker
from vqart.capture.page import HARNESS, RENDER_SCALE
from vqart.capture.sketch import Sketch, find_sketches
from vqart.capture.worker import CaptureResult, Job
from vqart.capture.writer import is_current
from vqart.errors import VqartError

LAUNCH_SECONDS = 60.0  # how long a fresh worker may take to answer (it starts Python, Playwright, a browser)
SILENCE_MARGIN = 10.0  # past the sketch's own time limit, before its worker is presumed stuck and killed

__all__ = ["CaptureResult", "capture", "parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """"64" -> (64, 64), "96x64" -> (96, 64); VqartError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(text))
    if not match:
        raise VqartError(f"--size {text!r}: give one number (64) or WIDTHxHEIGHT (96x64)")
    width = int(match[1])
    return width, int(match[2] or width)


class _Worker:
    """The parent's handle on one worker process (see vqart.capture.worker), killed when it falls silent."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited threads or browser state
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker.main, args=(child,), name="vqart-capture", daemon=True)
        self.process.start()
        child.close()

    def capture(self, job: Job, on_progress: Callable[[int], None]) -> CaptureResult:
        """Send one job and wait for its result, listening to progress; kill the worker if it stops talking."""
        self.conn.send(job)
        limit = LAUNCH_SECONDS  # until it first answers: a fresh worker starts Python, Playwright and a browser
        while True:
            try:
                if not self.conn.poll(limit):
                    self.kill()
                    return _failed(job, f"{job.sketch.path}: stopped after {limit:.0f} s without a frame (an endless "
                                        "loop?). Raise --timeout if it is just slow")
                kind, value = self.conn.recv()
            except (EOFError, OSError):
                self.kill()
                return _failed(job, f"{job.sketch.path}: the browser went down while capturing it (a crash, or out "
                                    "of memory?)")
            if kind == "done":
                return value
            limit = LAUNCH_SECONDS if kind == "launching" else job.timeout + SILENCE_MARGIN
            if kind == "progress":
                on_progress(value)

    def kill(self) -> None:
        """End the worker and its browser at once (they share a process group)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            self.process.kill()
        self.process.join()

    def close(self) -> None:
        """Let the worker close its browser and exit; kill it if it does not."""
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=15)
        if self.process.is_alive():
            self.kill()


def _failed(job: Job, message: str) -> CaptureResult:
    """A failure the worker could not report itself; its half-written folder is removed."""
    for tmp in job.folder.parent.glob(f".{job.folder.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    return CaptureResult(job.sketch.name, "failed", job.folder, message=message)


def capture(
    paths: Sequence[str | Path],
    out: str | Path = "data",
    *,
    frames: int = 240,
    fps: float = 30,
    size: tuple[int, int] = (64, 64),
    seed: int = 0,
    force: bool = False,
    timeout: float = 5.0,
    p5: int | str = "auto",
    console: Console | None = None,
) -> list[CaptureResult]:
    """Capture every sketch in `paths` into `out`/<name>/; failures are reported, not raised."""
    _check(frames=frames, fps=fps, size=size, timeout=timeout, p5=p5)
    sketches = find_sketches(paths)
    out = Path(out)
    console = console or Console(stderr=True)
    results: list[CaptureResult] = []
    current: _Worker | None = None
    with _progress(console) as progress:
        try:
            for sketch in sketches:
                settings = _settings(sketch, frames=frames, fps=fps, size=size, seed=seed, p5=p5)
                folder = out / sketch.name
                if not force and is_current(folder, settings):
                    results.append(CaptureResult(sketch.name, "skipped", folder, frames, message="up to date"))
                    continue
                current = current if current and current.process.is_alive() else _Worker()
                task = progress.add_task(sketch.name, total=frames)
                result = current.capture(Job(sketch, folder, settings, timeout),
                                         lambda n, task=task: progress.update(task, completed=n))
                if result.status == "failed":
                    progress.update(task, visible=False)
                    console.print(f"[red]failed[/red] {result.message}", highlight=False, soft_wrap=True)
                elif result.message:
                    console.print(f"[yellow]warning[/yellow] {sketch.name}: {result.message}", highlight=False, soft_wrap=True)
                results.append(result)
        finally:
            if current is not None:
                current.close()
    console.print(summary_table(results))
    return results


def summary_table(results: Sequence[CaptureResult]) -> Table:
    """One row per sketch: status, frames, time, the p5 version that ran (and why, unless the default), any note."""
    table = Table(title="capture")
    for column in ("sketch", "status", "frames", "seconds", "p5", "note"):
        table.add_column(column, justify="right" if column in ("frames", "seconds") else "left")
    colors = {"captured": "green", "skipped": "cyan", "failed": "red"}
    for r in results:
        why = f"p5 {r.p5}: {r.p5_reason}" if r.p5_reason not in ("", "the default") else ""
        note = "; ".join(filter(None, (why, _short(r.message))))
        table.add_row(r.sketch, f"[{colors[r.status]}]{r.status}[/]", str(r.frames), f"{r.seconds:.1f}", r.p5, note)
    return table


def _short(message: str, limit: int = 60) -> str:
    """A note that fits a table cell, without the file path; the full message was printed when it happened."""
    message = message.split(": ", 1)[-1]
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _settings(sketch: Sketch, *, frames: int, fps: float, size: tuple[int, int], seed: int, p5: int | str) -> dict:
    """What decides a capture's frames: a capture made with the same settings is up to date."""
    width, height = size
    return {
        "sketch_sha256": sketch.sha256,
        # The harness decides timing, seeding and render density, so a changed harness means a stale capture.
        "harness_sha256": hashlib.sha256(HARNESS.read_bytes()).hexdigest(),
        "render_scale": RENDER_SCALE,
        "p5": p5,
        "width": width,
        "height": height,
        "fps": fps,
        "seed": seed,
        "frames": frames,
    }


def _check(*, frames: int, fps: float, size: tuple[int, int], timeout: float, p5: int | str) -> None:
    if frames < 1:
        raise VqartError(f"--frames {frames}: capture at least 1 frame")
    if not 0 < fps <= 1000:
        raise VqartError(f"--fps {fps}: give a rate between 1 and 1000")
    if not all(8 <= side <= 2048 for side in size):
        raise VqartError(f"--size {size[0]}x{size[1]}: each side must be between 8 and 2048 pixels")
    if timeout <= 0:
        raise VqartError(f"--timeout {timeout}: give a positive number of seconds")
    if p5 not in ("auto", 1, 2):
        raise VqartError(f"--p5 {p5}: choose auto, 1 or 2")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
