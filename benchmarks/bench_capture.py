"""Capture speed, side by side in one browser: vqart's pipeline against one screenshot per frame, and a big
WEBGL canvas rendered at about twice the kept size against the same sketch rendered at its full size.

Protocol: virtual time, browser start-up and page load excluded. "capture" is end to end: draw, in-page
grayscale read-back, batched transfer and PNGs written. "screenshot" is the naive way: draw one frame, page
screenshot of the canvas, decode, gray, resize, write the PNG. "draw only" steps the sketch with no read-back
at all. Note: Chromium defers rasterising canvas work until its pixels are read, so "draw only" leaves out
most raster cost; it is a ceiling, not a fair comparison. The WEBGL sketches (benchmarks/sketches/, 720x720
with lights) are also captured with pixelDensity(1) added to their setup(), which is how every sketch was
rendered before: the reference for both speed and fidelity (PSNR of the 64x64 frames).
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import Browser, sync_playwright

from vqart.capture.browser import launch
from vqart.capture.page import SketchPage
from vqart.capture.sketch import Sketch
from vqart.capture.writer import frame_name, write_capture

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Capture: frames per second (PNGs written, browser start-up excluded) and big WEBGL canvases"
SKETCH = ROOT / "sketches" / "spirograph.js"  # one of the cheapest to draw, so the figure is mostly the pipeline
WEBGL = [ROOT / "benchmarks" / "sketches" / name for name in ("lit_sphere.js", "lit_scene.js")]


def capture_rate(browser: Browser, sketch: Sketch, size: tuple[int, int], frames: int) -> tuple[float, np.ndarray]:
    """Frames/s of the real pipeline (stepping, in-page gray, batched transfer, PNG files), and the frames."""
    with SketchPage(browser, sketch, size=size, timeout=60) as page, tempfile.TemporaryDirectory() as out:
        page.load()
        kept = []

        def batches():
            for batch in page.frames(frames):
                kept.append(batch)
                yield batch

        started = time.perf_counter()
        write_capture(Path(out) / sketch.name, batches(), {"sketch": sketch.name})
        return frames / (time.perf_counter() - started), np.concatenate(kept)


def draw_rate(browser: Browser, sketch: Sketch, frames: int) -> float:
    """Frames/s of stepping the sketch alone, nothing read back."""
    with SketchPage(browser, sketch) as page:
        page.load()
        started = time.perf_counter()
        for _ in page.frames(frames, read=False):
            pass
        return frames / (time.perf_counter() - started)


def screenshot_rate(browser: Browser, sketch: Sketch, size: tuple[int, int], frames: int) -> float:
    """Frames/s of the naive way: one page screenshot per frame, converted and written in Python."""
    with SketchPage(browser, sketch, size=size) as page, tempfile.TemporaryDirectory() as out:
        page.load()
        canvas = page.page.locator("canvas >> visible=true").first
        started = time.perf_counter()
        for i in range(frames):
            for _ in page.frames(1, read=False):
                pass
            shot = Image.open(io.BytesIO(canvas.screenshot())).convert("L").resize(size, Image.Resampling.BOX)
            shot.save(Path(out) / frame_name(i), format="PNG", compress_level=1)
        return frames / (time.perf_counter() - started)


def webgl_rows(browser: Browser, path: Path, frames: int) -> list[dict]:
    """A big WEBGL sketch as captured now and as rendered before (full size): frames/s of each, and PSNR."""
    source = path.read_text()
    full = source.replace("createCanvas(720, 720, WEBGL);", "createCanvas(720, 720, WEBGL); pixelDensity(1);")
    now, frames_now = capture_rate(browser, Sketch(path, source), (64, 64), frames)
    before, frames_before = capture_rate(browser, Sketch(path, full), (64, 64), max(8, frames // 8))
    n = len(frames_before)
    mse = float(np.mean((frames_now[:n].astype(float) - frames_before.astype(float)) ** 2))
    fidelity = 10 * np.log10(255**2 / max(mse, 1e-9))
    return [
        {"measure": f"capture 64x64, 720x720 WEBGL with lights ({path.name})", "value": round(now, 1),
         "unit": "frames/s", "target": ">= 60", "ok": now >= 60},
        {"measure": "  the same rendered at full size, as before", "value": round(before, 1), "unit": "frames/s",
         "target": "", "ok": None},
        {"measure": "  frames vs the full-size render: PSNR", "value": round(fidelity, 1), "unit": "dB",
         "target": ">= 35", "ok": fidelity >= 35},
    ]


def run(quick: bool = False) -> list[dict]:
    """Measure capture at 64x64 and 128x128, the screenshot baseline, draw-only and big WEBGL, in one browser."""
    frames, shots = (240, 30) if quick else (960, 120)
    sketch = Sketch(SKETCH, SKETCH.read_text())
    with sync_playwright() as playwright:
        browser = launch(playwright)
        capture_rate(browser, sketch, (64, 64), 30)  # warm-up: JIT, caches, first-page costs
        fast64, _ = capture_rate(browser, sketch, (64, 64), frames)
        fast128, _ = capture_rate(browser, sketch, (128, 128), frames)
        shots64 = screenshot_rate(browser, sketch, (64, 64), shots)
        draw = draw_rate(browser, sketch, frames)
        webgl = [row for path in WEBGL for row in webgl_rows(browser, path, 60 if quick else 240)]
        browser.close()
    ratio = fast64 / shots64
    name = SKETCH.name
    return [
        {"measure": f"capture 64x64 ({name})", "value": round(fast64, 1), "unit": "frames/s", "target": ">= 600", "ok": fast64 >= 600},
        {"measure": f"capture 128x128 ({name})", "value": round(fast128, 1), "unit": "frames/s", "target": ">= 300", "ok": fast128 >= 300},
        {"measure": "screenshot per frame 64x64 (naive)", "value": round(shots64, 1), "unit": "frames/s", "target": "", "ok": None},
        {"measure": "draw only, no read-back (ceiling)", "value": round(draw, 1), "unit": "frames/s", "target": "", "ok": None},
        {"measure": "capture 64x64 / screenshot", "value": round(ratio, 1), "unit": "x", "target": ">= 20", "ok": ratio >= 20},
        *webgl,
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['measure']:<40} {row['value']:>9} {row['unit']:<9} {row['target']:<7} {row['ok']}")
