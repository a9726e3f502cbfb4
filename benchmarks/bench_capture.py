"""Capture speed, side by side in one browser: vqart's pipeline against one screenshot per frame.

Protocol: one bundled sketch, virtual time, browser start-up and page load excluded. "capture" is end to
end: draw, in-page grayscale read-back, batched transfer and PNGs written. "screenshot" is the naive way:
draw one frame, page screenshot of the canvas, decode, gray, resize, write the PNG. "draw only" steps the
sketch with no read-back at all. Note: Chromium defers rasterising canvas work until its pixels are read,
so "draw only" leaves out most raster cost; it is a ceiling, not a fair comparison.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from playwright.sync_api import Browser, sync_playwright

from vqart.capture.browser import launch
from vqart.capture.page import SketchPage
from vqart.capture.sketch import Sketch
from vqart.capture.writer import frame_name, write_capture

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Capture: frames per second (bundled sketch, PNGs written, browser start-up excluded)"
SKETCH = ROOT / "sketches" / "spirograph.js"  # one of the cheapest to draw, so the figure is mostly the pipeline


def capture_rate(browser: Browser, sketch: Sketch, size: tuple[int, int], frames: int) -> float:
    """Frames/s of the real pipeline: stepping, in-page gray, batched transfer, PNG files."""
    with SketchPage(browser, sketch, size=size) as page, tempfile.TemporaryDirectory() as out:
        page.load()
        started = time.perf_counter()
        write_capture(Path(out) / sketch.name, page.frames(frames), {"sketch": sketch.name})
        return frames / (time.perf_counter() - started)


def draw_rate(browser: Browser, sketch: Sketch, frames: int, batch: int = 64) -> float:
    """Frames/s of stepping the sketch alone, nothing read back."""
    with SketchPage(browser, sketch) as page:
        page.load()
        started = time.perf_counter()
        for done in range(0, frames, batch):
            page.start(min(batch, frames - done), read=False)
            page.collect()
        return frames / (time.perf_counter() - started)


def screenshot_rate(browser: Browser, sketch: Sketch, size: tuple[int, int], frames: int) -> float:
    """Frames/s of the naive way: one page screenshot per frame, converted and written in Python."""
    with SketchPage(browser, sketch, size=size) as page, tempfile.TemporaryDirectory() as out:
        page.load()
        canvas = page.page.locator("canvas >> visible=true").first
        started = time.perf_counter()
        for i in range(frames):
            page.start(1, read=False)
            page.collect()
            shot = Image.open(io.BytesIO(canvas.screenshot())).convert("L").resize(size, Image.Resampling.BOX)
            shot.save(Path(out) / frame_name(i), format="PNG", compress_level=1)
        return frames / (time.perf_counter() - started)


def run(quick: bool = False) -> list[dict]:
    """Measure capture at 64x64 and 128x128, the screenshot baseline and draw-only, in one browser."""
    frames, shots = (240, 30) if quick else (960, 120)
    sketch = Sketch(SKETCH, SKETCH.read_text())
    with sync_playwright() as playwright:
        browser = launch(playwright)
        capture_rate(browser, sketch, (64, 64), 30)  # warm-up: JIT, caches, first-page costs
        fast64 = capture_rate(browser, sketch, (64, 64), frames)
        fast128 = capture_rate(browser, sketch, (128, 128), frames)
        shots64 = screenshot_rate(browser, sketch, (64, 64), shots)
        draw = draw_rate(browser, sketch, frames)
        browser.close()
    ratio = fast64 / shots64
    name = SKETCH.name
    return [
        {"measure": f"capture 64x64 ({name})", "value": round(fast64, 1), "unit": "frames/s", "target": ">= 600", "ok": fast64 >= 600},
        {"measure": f"capture 128x128 ({name})", "value": round(fast128, 1), "unit": "frames/s", "target": ">= 300", "ok": fast128 >= 300},
        {"measure": "screenshot per frame 64x64 (naive)", "value": round(shots64, 1), "unit": "frames/s", "target": "", "ok": None},
        {"measure": "draw only, no read-back (ceiling)", "value": round(draw, 1), "unit": "frames/s", "target": "", "ok": None},
        {"measure": "capture 64x64 / screenshot", "value": round(ratio, 1), "unit": "x", "target": ">= 20", "ok": ratio >= 20},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['measure']:<40} {row['value']:>9} {row['unit']:<9} {row['target']:<7} {row['ok']}")
