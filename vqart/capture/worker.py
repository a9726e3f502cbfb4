"""The capture worker: a child process that owns a headless browser and captures the sketches it is sent.

It tells the parent (vqart.capture.pipeline) how far each sketch has got after every batch of frames. When it
falls silent past a sketch's time limit the parent kills it, Chromium and all, reports that sketch as hung and
starts a fresh worker for the rest: whatever one sketch does (an endless loop, a renderer crash, all the
memory), the other sketches are captured and the run ends with its summary.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from vqart import __version__
from vqart.capture.browser import launch
from vqart.capture.page import SketchError, SketchPage
from vqart.capture.sketch import Sketch, p5_library
from vqart.capture.writer import write_capture

# "curveTightness is not defined" (global mode) or "p.curveTightness is not a function" (instance mode).
_MISSING_NAME = re.compile(r"ReferenceError: (\w+) is not defined|TypeError: (?:[\w$.]+\.)?(\w+) is not a function")


@dataclass
class CaptureResult:
    """What happened to one sketch: status is "captured", "skipped" or "failed"."""

    sketch: str
    status: str
    folder: Path
    frames: int = 0
    seconds: float = 0.0
    message: str = ""
    p5: str = ""  # the p5.js version that ran
    p5_reason: str = ""  # why that version: "the default", "--p5 1", a retry's cause...


@dataclass(frozen=True)
class Job:
    """One sketch to capture into `folder` with `settings` (frames, fps, size, seed, p5 "auto" | 1 | 2)."""

    sketch: Sketch
    folder: Path
    settings: dict
    timeout: float


def main(conn: Connection) -> None:
    """The worker process: capture each Job received until None, reporting ("launching" | "progress" | "done", value)."""
    os.setsid()  # a process group of its own, so the parent can kill the browser along with it
    with sync_playwright() as playwright:
        browser = None
        while (job := conn.recv()) is not None:
            if browser is None or not browser.is_connected():
                conn.send(("launching", None))
                browser = launch(playwright)
            conn.send(("done", capture_job(browser, job, lambda n: conn.send(("progress", n)))))


def capture_job(browser: Browser, job: Job, progress: Callable[[int], None]) -> CaptureResult:
    """Capture one sketch; under p5 "auto", a 2.x failure that names an API p5 2.x removed is retried under 1.x."""
    asked = job.settings["p5"]
    major, reason = (asked, f"--p5 {asked}") if asked in (1, 2) else job.sketch.p5_choice()
    result = _attempt(browser, job, major, reason, progress)
    if asked == "auto" and major == 2 and result.status == "failed":
        name = removed_api(browser, result.message)
        if name:
            reason = f"under p5 2.x it failed on {name}, a p5 1.x API that 2.x removed"
            retried = _attempt(browser, job, 1, reason, progress)
            if retried.status == "failed":
                retried.message += f" (p5 2.x failed first: {result.message})"
            return retried
    return result


def _attempt(browser: Browser, job: Job, major: int, reason: str, progress: Callable[[int], None]) -> CaptureResult:
    """Capture one sketch with one p5 major version; failures are returned, not raised."""
    started = time.perf_counter()
    s, sketch = job.settings, job.sketch
    progress(0)
    try:
        with SketchPage(browser, sketch, size=(s["width"], s["height"]), fps=s["fps"], seed=s["seed"],
                        timeout=job.timeout, p5=major) as page:
            info = page.load()
            done = 0

            def batches():
                nonlocal done
                for batch in page.frames(s["frames"]):
                    done += len(batch)
                    progress(done)
                    yield batch

            manifest = {
                **s, "sketch": sketch.name, "source": str(sketch.path), "p5_version": info["version"],
                "p5_major": major, "p5_reason": reason, "mode": info["mode"],
                "renderer": "webgl" if info["webgl"] else "p2d", "canvas_width": info["canvasWidth"],
                "canvas_height": info["canvasHeight"], "render_density": info["density"],
                "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "timeout": job.timeout,
                "vqart_version": __version__,
            }
            count, identical = write_capture(job.folder, batches(), manifest)
    except (SketchError, PlaywrightError) as err:
        message = str(err) if isinstance(err, SketchError) else f"{sketch.path}: browser error: {err}"
        return CaptureResult(sketch.name, "failed", job.folder, seconds=time.perf_counter() - started,
                             message=message, p5=f"{major}.x", p5_reason=reason)
    note = "every frame is identical: is the sketch blank or static?" if identical and count > 1 else ""
    return CaptureResult(sketch.name, "captured", job.folder, count, time.perf_counter() - started, note,
                         p5=info["version"], p5_reason=reason)


_REMOVED: set[str] = set()


def removed_api(browser: Browser, message: str) -> str | None:
    """The identifier an error message complains about, when p5 1.x defines it and p5 2.x does not."""
    match = _MISSING_NAME.search(message)
    name = match and (match[1] or match[2])
    if not name:
        return None
    if not _REMOVED:
        names = {major: _p5_names(browser, major) for major in (1, 2)}
        _REMOVED.update(names[1] - names[2])
    return name if name in _REMOVED else None


def _p5_names(browser: Browser, major: int) -> set[str]:
    """Every name on p5.prototype (what global mode makes global) in the installed p5.js `major`.x."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content(f"<script>{p5_library(major).read_text()}</script>")
        return set(page.evaluate("""() => {
            const names = []; let o = p5.prototype;
            while (o && o !== Object.prototype) { names.push(...Object.getOwnPropertyNames(o)); o = Object.getPrototypeOf(o); }
            return names; }"""))
    finally:
        context.close()

