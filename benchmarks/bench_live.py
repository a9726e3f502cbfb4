"""Live training view: what watching costs the training, how fresh the page is, and how it copes with an hour.

Speed: the default shape trains on the bundled sketches with --live served, once with no page and once with a
headless Chromium showing the view (on the same two cores: on a laptop the browser has its own). Within each
training the view is switched on and off in alternate windows of WINDOW seconds (off, nothing reaches it and the
page has nothing to draw), and the steps of each window are timed: the ratio is the median, over neighbouring
off and on windows, of the off windows' time per step over the on windows'. This machine's speed drifts by 10-20%
from one minute to the next (whole trials alternating plain and live, 40 s each, read 80-106%), so only a
comparison within seconds resolves the 3% margin. Each on window starts with a heavy snapshot (its last one is
older than its spacing), so the view takes slightly more of them than when always on: a conservative reading.
Beside it the view's own cost measured directly: the share of the on windows' time spent in its observer.
Freshness: how old a step's scalars are when the page gets them, and how long an applied control takes to show
(p95). An hour: the page is fed 10,000 points per series, and each redraw of the three charts is timed.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from playwright.sync_api import sync_playwright

from common import bench_data
from vqart.capture.browser import launch
from vqart.controls import parse_control
from vqart.live import MAX_POINTS, LiveView
from vqart.observers import Observer
from vqart.server import serve_live
from vqart.train import train

TITLE = "Live training view: cost to training speed, freshness on the page, an hour of points (CPU)"


WINDOW = 4.0  # seconds: long enough for a heavy snapshot or two, short against the machine's drift


class Windows(Observer):
    """Hands the training to the live view in alternate windows of WINDOW seconds (odd ones on) and times each
    window's steps. A step's time runs from one on_step to the next, so it includes what the view took at the one
    before; the first epoch (k-means init) and the steps spanning a validation are left out."""

    def __init__(self, view: LiveView) -> None:
        self.view = view
        self.windows: dict[int, list[float]] = {}  # window -> [seconds, steps]
        self.in_view = 0.0
        self._start, self._last, self._window = time.perf_counter(), None, 0

    def on_start(self, trainer) -> None:
        self.batch = trainer.cfg.train.batch_size
        self.view.on_start(trainer)

    def on_step(self, trainer, step) -> None:
        now = time.perf_counter()
        if self._last is not None and step.epoch > 1:
            spent = self.windows.setdefault(self._window, [0.0, 0])
            spent[0] += now - self._last
            spent[1] += 1
        self._last, self._window = now, int((now - self._start) // WINDOW)
        if self._window % 2:
            self.view.on_step(trainer, step)
            self.in_view += (time.perf_counter() - now) * (step.epoch > 1)

    def on_epoch(self, trainer, row) -> None:
        self._last = None
        self.view.on_epoch(trainer, row)

    def on_event(self, trainer, event) -> None:
        self.view.on_event(trainer, event)

    def on_end(self, trainer) -> None:
        self.view.on_end(trainer)

    def seconds(self, on: bool) -> float:
        """Seconds timed in the windows with the view on (or off)."""
        return sum(s for i, (s, _) in self.windows.items() if i % 2 == on)

    def speed(self, on: bool) -> float:
        """Images/s over the windows with the view on (or off)."""
        return self.batch * sum(n for i, (_, n) in self.windows.items() if i % 2 == on) / self.seconds(on)

    def ratios(self) -> list[float]:
        """Per on window: the time per step of its off neighbours (their mean) over its own."""
        rate = {i: s / n for i, (s, n) in self.windows.items() if n >= 5}
        return [np.mean([rate[j] for j in (i - 1, i + 1) if j in rate]) / rate[i]
                for i in rate if i % 2 and (i - 1 in rate or i + 1 in rate)]


def _trial(data: Path, out: Path, seconds: float, browser) -> tuple[Windows, dict]:
    """Train for `seconds` with the view served and switched on and off, with a browser on it unless `browser` is
    None: the windows' timings, and what the page measured."""
    shutil.rmtree(out, ignore_errors=True)
    view = LiveView()
    windows = Windows(view)
    server = serve_live(view, port=0)
    page, seen = None, {}
    try:
        if browser is not None:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{server.server_port}/")

            def control_later() -> None:  # a few beta changes mid-run, to time how fast they show
                for i in range(3):
                    threading.Event().wait(seconds / 4)
                    view.trainer.controls.put(parse_control("beta", 0.25 + 0.01 * i, f"b{i}"))

            threading.Thread(target=control_later, daemon=True).start()
        train(data, out, minutes=seconds / 60, device="cpu", observers=[windows])
        if page is not None:
            page.wait_for_timeout(500)
            seen = page.evaluate("window.__vqartLatencies()")
            seen["feed"] = page.evaluate(f"window.__vqartFeed({MAX_POINTS})")
            seen["overfeed"] = page.evaluate(f"window.__vqartFeed({5 * MAX_POINTS})")["points"]
        return windows, seen
    finally:
        if page is not None:
            page.close()
        server.shutdown()


def run(quick: bool = False) -> list[dict]:
    """A training with the view switched on and off, then another with a page on it; then the page's own
    measurements."""
    torch.set_num_threads(2)
    scratch = Path(tempfile.mkdtemp(prefix="vqart-bench-live-"))
    data, _ = bench_data(scratch)
    seconds = 30 if quick else 120
    with sync_playwright() as playwright:
        browser = launch(playwright)
        alone, _ = _trial(data, scratch / "alone", seconds, None)
        watched, page_seen = _trial(data, scratch / "page", seconds, browser)
        browser.close()
    shutil.rmtree(scratch, ignore_errors=True)
    ratio = lambda w: float(np.median(w.ratios())) if w.ratios() else float("nan")  # a --quick run may time none
    spread = lambda w: 100 * float(np.subtract(*np.percentile(w.ratios(), [75, 25]))) if w.ratios() else float("nan")
    in_view = sum(w.in_view for w in (alone, watched)) / sum(w.seconds(True) for w in (alone, watched))
    p95 = lambda xs: float(np.percentile(xs, 95) * 1000) if xs else float("nan")
    scalars, controls = p95(page_seen.get("scalars", [])), p95(page_seen.get("controls", []))
    redraw = page_seen.get("feed", {}).get("ms", [float("nan")])
    row = lambda measure, value, unit="", target="", ok=None: {"measure": measure, "value": value, "unit": unit,
                                                               "target": target, "ok": ok}
    return [
        row("training speed, view off (no page)", alone.speed(False), "images/s"),
        row("with --live, no page", alone.speed(True), "images/s"),
        row("with --live, no page / view off (median of windows)", 100 * ratio(alone), "%", ">= 97",
            ratio(alone) >= 0.97),
        row("with --live and a headless Chromium on the view", watched.speed(True), "images/s"),
        row("with a page / view off (median of windows)", 100 * ratio(watched), "%", ">= 90", ratio(watched) >= 0.90),
        row("time the trainer spends in the view, share of the on windows' time", 100 * in_view, "%"),
        row(f"windows of {WINDOW:.0f} s compared (no page, page)", f"{len(alone.ratios())}, {len(watched.ratios())}"),
        row("the windows' ratios, interquartile range (no page, page)",
            f"{spread(alone):.1f}, {spread(watched):.1f}", "points"),
        row("a step's scalars reach the page, p95", scalars, "ms", "<= 250", scalars <= 250),
        row("an applied control shows on the page, p95", controls, "ms", "<= 250", controls <= 250),
        row(f"redraw of the 3 charts with {MAX_POINTS:,} points per series, median", float(np.median(redraw)), "ms"),
        row(f"redraw with {MAX_POINTS:,} points per series, worst of 20", float(np.max(redraw)), "ms", "< 16",
            float(np.max(redraw)) < 16),
        row(f"points the page keeps after being fed {6 * MAX_POINTS:,}", page_seen.get("overfeed", 0), "points",
            f"<= {MAX_POINTS}", page_seen.get("overfeed", 0) <= MAX_POINTS),
        row("points the server keeps per series (ring buffer)", MAX_POINTS, "points"),
    ]


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
