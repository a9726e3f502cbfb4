"""Live training view: what watching costs the training, how fresh the page is, and how it copes with an hour.

Speed: the default shape trains on the bundled sketches for 40 s per trial, plain, with --live and no page, and
with --live and a headless Chromium showing the view (on the same two cores: on a laptop the browser has its
own); alternating, median of 3, images/s of the epochs after the first (which pays k-means init). Freshness:
how old a step's scalars are when the page gets them, and how long an applied control takes to show (p95).
Beside the speeds, the view's own cost measured directly: the share of the trials' time spent in its observer
(two plain trials can differ by more than the 3% margin, so the speed ratio alone cannot resolve it).
An hour: the page is fed 10,000 points per series, and each redraw of the three charts is timed.
"""

from __future__ import annotations

import json
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
from vqart.server import serve_live
from vqart.train import train

TITLE = "Live training view: cost to training speed, freshness on the page, an hour of points (CPU)"


class TimedView(LiveView):
    """The live view, adding up the time the trainer's thread spends in it."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    def on_step(self, trainer, step) -> None:
        start = time.perf_counter()
        super().on_step(trainer, step)
        self.seconds += time.perf_counter() - start


def _speed(run: Path) -> float:
    """Median images/s of the run's epochs after the first."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return float(np.median([r["images_per_s"] for r in rows[1:]] or [rows[0]["images_per_s"]]))


def _trial(data: Path, out: Path, seconds: float, mode: str, browser) -> tuple[float, dict, float]:
    """Train for `seconds` plain, "live" (a view, no page) or "page" (a view and a browser on it): images/s, what
    the page measured, and the seconds the trainer spent in the view."""
    shutil.rmtree(out, ignore_errors=True)
    view = TimedView() if mode != "plain" else None
    server = serve_live(view, port=0) if view else None
    page, seen = None, {}
    try:
        if mode == "page":
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{server.server_port}/")
        observers = [view] if view else []
        if page is not None:

            def control_later() -> None:  # a few beta changes mid-run, to time how fast they show
                for i in range(3):
                    threading.Event().wait(seconds / 4)
                    view.trainer.controls.put(parse_control("beta", 0.25 + 0.01 * i, f"b{i}"))

            threading.Thread(target=control_later, daemon=True).start()
        train(data, out, minutes=seconds / 60, device="cpu", observers=observers)
        if page is not None:
            page.wait_for_timeout(500)
            seen = page.evaluate("window.__vqartLatencies()")
            seen["feed"] = page.evaluate(f"window.__vqartFeed({MAX_POINTS})")
            seen["overfeed"] = page.evaluate(f"window.__vqartFeed({5 * MAX_POINTS})")["points"]
        return _speed(out), seen, view.seconds if view else 0.0
    finally:
        if page is not None:
            page.close()
        if server is not None:
            server.shutdown()


def run(quick: bool = False) -> list[dict]:
    """Alternate plain, live and live-with-a-page trials; then the page's own measurements."""
    torch.set_num_threads(2)
    scratch = Path(tempfile.mkdtemp(prefix="vqart-bench-live-"))
    data, _ = bench_data(scratch)
    seconds, reps = (15, 1) if quick else (40, 3)
    speeds: dict[str, list[float]] = {"plain": [], "live": [], "page": []}
    page_seen: dict = {}
    in_view = 0.0
    with sync_playwright() as playwright:
        browser = launch(playwright)
        for _ in range(reps):
            for mode in speeds:
                speed, seen, spent = _trial(data, scratch / mode, seconds, mode, browser)
                in_view += spent
                speeds[mode].append(speed)
                page_seen = seen or page_seen
        browser.close()
    shutil.rmtree(scratch, ignore_errors=True)
    plain, live, page = (float(np.median(speeds[m])) for m in ("plain", "live", "page"))
    p95 = lambda xs: float(np.percentile(xs, 95) * 1000) if xs else float("nan")
    scalars, controls = p95(page_seen.get("scalars", [])), p95(page_seen.get("controls", []))
    redraw = page_seen.get("feed", {}).get("ms", [float("nan")])
    row = lambda measure, value, unit="", target="", ok=None: {"measure": measure, "value": value, "unit": unit,
                                                               "target": target, "ok": ok}
    return [
        row("training speed, plain (median of 3)", plain, "images/s"),
        row("with --live, no page", live, "images/s"),
        row("with --live, no page / plain", 100 * live / plain, "%", ">= 97", live >= 0.97 * plain),
        row("with --live and a headless Chromium on the view", page, "images/s"),
        row("with a page / plain", 100 * page / plain, "%", ">= 90", page >= 0.90 * plain),
        row("time the trainer spends in the view, share of the view trials' budget", 100 * in_view / (2 * reps * seconds), "%"),
        row("plain trials' spread (fastest / slowest - 1)", 100 * (max(speeds["plain"]) / min(speeds["plain"]) - 1), "%"),
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
