"""Capturing sketches: run each headless and deterministically, store its frames under data/<sketch>/."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from vqart import __version__
from vqart.capture.browser import launch
from vqart.capture.page import HARNESS, SketchError, SketchPage
from vqart.capture.sketch import Sketch, find_sketches
from vqart.capture.writer import is_current, write_capture
from vqart.errors import VqartError


@dataclass
class CaptureResult:
    """What happened to one sketch: status is "captured", "skipped" or "failed"."""

    sketch: str
    status: str
    folder: Path
    frames: int = 0
    seconds: float = 0.0
    message: str = ""


def parse_size(text: str) -> tuple[int, int]:
    """"64" -> (64, 64), "96x64" -> (96, 64); VqartError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(text))
    if not match:
        raise VqartError(f"--size {text!r}: give one number (64) or WIDTHxHEIGHT (96x64)")
    width = int(match[1])
    return width, int(match[2] or width)


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
    p5: int | None = None,
    console: Console | None = None,
) -> list[CaptureResult]:
    """Capture every sketch in `paths` into `out`/<name>/; failures are reported, not raised."""
    _check(frames=frames, fps=fps, size=size, timeout=timeout, p5=p5)
    sketches = find_sketches(paths)
    out = Path(out)
    console = console or Console(stderr=True)
    results: list[CaptureResult] = []
    with sync_playwright() as playwright, _progress(console) as progress:
        browser = None
        for sketch in sketches:
            settings = _settings(sketch, frames=frames, fps=fps, size=size, seed=seed, p5=p5)
            folder = out / sketch.name
            if not force and is_current(folder, settings):
                results.append(CaptureResult(sketch.name, "skipped", folder, frames, message="up to date"))
                continue
            if browser is None or not browser.is_connected():
                browser = launch(playwright)
            task = progress.add_task(sketch.name, total=frames)
            result = _capture_one(browser, sketch, folder, settings, progress, task, timeout=timeout, p5=p5)
            if result.status == "failed":
                console.print(f"[red]failed[/red] {result.message}", highlight=False, soft_wrap=True)
            elif result.message:
                console.print(f"[yellow]warning[/yellow] {sketch.name}: {result.message}", highlight=False, soft_wrap=True)
            results.append(result)
    console.print(summary_table(results))
    return results


def summary_table(results: Sequence[CaptureResult]) -> Table:
    """One row per sketch: status, frames, time and any note."""
    table = Table(title="capture")
    for column in ("sketch", "status", "frames", "seconds", "note"):
        table.add_column(column, justify="right" if column in ("frames", "seconds") else "left")
    colors = {"captured": "green", "skipped": "cyan", "failed": "red"}
    for r in results:
        table.add_row(
            r.sketch, f"[{colors[r.status]}]{r.status}[/]", str(r.frames), f"{r.seconds:.1f}", _short(r.message)
        )
    return table


def _capture_one(
    browser: Browser,
    sketch: Sketch,
    folder: Path,
    settings: dict,
    progress: Progress,
    task: TaskID,
    *,
    timeout: float,
    p5: int | None,
) -> CaptureResult:
    started = time.perf_counter()
    size = (settings["width"], settings["height"])
    try:
        with SketchPage(
            browser, sketch, size=size, fps=settings["fps"], seed=settings["seed"], timeout=timeout, p5=p5
        ) as page:
            info = page.load()

            def batches():
                for batch in page.frames(settings["frames"]):
                    progress.advance(task, len(batch))
                    yield batch

            manifest = {
                **settings,
                "sketch": sketch.name,
                "source": str(sketch.path),
                "p5_version": info["version"],
                "mode": info["mode"],
                "renderer": "webgl" if info["webgl"] else "p2d",
                "canvas_width": info["canvasWidth"],
                "canvas_height": info["canvasHeight"],
                "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "timeout": timeout,
                "vqart_version": __version__,
            }
            count, identical = write_capture(folder, batches(), manifest)
    except (SketchError, PlaywrightError) as err:
        progress.update(task, visible=False)
        message = str(err) if isinstance(err, SketchError) else f"{sketch.path}: browser error: {err}"
        return CaptureResult(sketch.name, "failed", folder, seconds=time.perf_counter() - started, message=message)
    note = "every frame is identical: is the sketch blank or static?" if identical and count > 1 else ""
    return CaptureResult(sketch.name, "captured", folder, count, time.perf_counter() - started, note)


def _short(message: str, limit: int = 60) -> str:
    """A note that fits a table cell, without the file path; the full message was printed when it happened."""
    message = message.split(": ", 1)[-1]
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _settings(sketch: Sketch, *, frames: int, fps: float, size: tuple[int, int], seed: int, p5: int | None) -> dict:
    width, height = size
    return {
        "sketch_sha256": sketch.sha256,
        # The harness decides timing and seeding, so a changed harness means a stale capture.
        "harness_sha256": hashlib.sha256(HARNESS.read_bytes()).hexdigest(),
        "p5_major": sketch.p5_major(p5),
        "width": width,
        "height": height,
        "fps": fps,
        "seed": seed,
        "frames": frames,
    }


def _check(*, frames: int, fps: float, size: tuple[int, int], timeout: float, p5: int | None) -> None:
    if frames < 1:
        raise VqartError(f"--frames {frames}: capture at least 1 frame")
    if not 0 < fps <= 1000:
        raise VqartError(f"--fps {fps}: give a rate between 1 and 1000")
    if not all(8 <= side <= 2048 for side in size):
        raise VqartError(f"--size {size[0]}x{size[1]}: each side must be between 8 and 2048 pixels")
    if timeout <= 0:
        raise VqartError(f"--timeout {timeout}: give a positive number of seconds")
    if p5 not in (None, 1, 2):
        raise VqartError(f"--p5 {p5}: choose 1 or 2")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
