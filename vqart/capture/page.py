"""One sketch running in its own browser context: load it, step it, read its frames back as gray bytes."""

from __future__ import annotations

import base64
import json
import mimetypes
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from playwright.sync_api import Browser, Route
from playwright.sync_api import Error as PlaywrightError

from vqart.capture.sketch import Sketch, p5_library
from vqart.errors import VqartError

HARNESS = Path(__file__).with_name("harness.js")
BATCH_SECONDS = 0.25
ORIGIN = "http://vqart.local"  # never resolved: every request is answered from local files or refused
INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><base href="/sketch/">
<script src="/vqart/p5.min.js"></script>
<script>__vqart.hookP5(p5)</script>
<script src="/sketch/{script}"></script>
</head><body style="margin:0"></body></html>
"""


class SketchError(VqartError):
    """A sketch failed to load, threw, or hung; the message names the file and line."""


class SketchPage:
    """A sketch loaded into a fresh browser context, stepped by `frames()` in batches."""

    def __init__(
        self,
        browser: Browser,
        sketch: Sketch,
        *,
        size: tuple[int, int] = (64, 64),
        fps: float = 30,
        seed: int = 0,
        timeout: float = 5.0,
        p5: int | None = None,
    ) -> None:
        self.sketch, self.size, self.timeout = sketch, size, timeout
        self.p5_major = sketch.p5_major(p5)
        self.info: dict = {}
        self._in_flight: deque[tuple[int, float]] = deque()  # (frames, when started) per batch asked for
        self._last_collect = 0.0
        self._frame_seconds: float | None = None
        self._reports: deque[dict] = deque()
        width, height = size
        config = {"seed": seed, "fps": fps, "width": width, "height": height, "timeoutMs": timeout * 1000}
        # A viewport with the capture's aspect, so windowWidth/windowHeight sketches fill it undistorted.
        scale = 512 / max(width, height)
        self.context = browser.new_context(
            viewport={"width": round(width * scale), "height": round(height * scale)},
            device_scale_factor=1,
            timezone_id="UTC",
            locale="en-US",
            service_workers="block",
        )
        self.context.add_init_script(f"window.__vqartConfig = {json.dumps(config)};\n{HARNESS.read_text()}")
        self.context.route("**/*", self._serve)
        self.context.expose_function("__vqartReport", self._receive)
        self.page = self.context.new_page()

    def __enter__(self) -> SketchPage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the context; this also ends a renderer stuck in an endless loop."""
        try:
            self.context.close()
        except PlaywrightError:
            pass  # the browser is already gone; nothing is left to release

    def load(self) -> dict:
        """Open the page and wait for setup() to finish; returns what the page reports about the sketch."""
        self.page.goto(f"{ORIGIN}/sketch/index.html", wait_until="commit")
        self.info = self._wait(what="setup() did not finish", budget=self.timeout + 2)  # + loading p5 itself
        if "error" in self.info:
            raise self._error(self.info["error"])
        return self.info

    def start(self, count: int, read: bool = True) -> None:
        """Ask the page for `count` more frames without waiting; batches queue up in order."""
        self.page.evaluate("([count, read]) => __vqart.start(count, read)", [count, read])
        self._in_flight.append((count, time.perf_counter()))

    def collect(self) -> np.ndarray:
        """Wait for the oldest batch asked for and return it as uint8 (count, H, W)."""
        count, started = self._in_flight.popleft()
        # The page itself stops any frame slower than the timeout; this budget catches one that never ends.
        budget = self.timeout + 4 * count * (self._frame_seconds or 0)
        result = self._wait(what="a frame did not finish", budget=budget)
        now = time.perf_counter()
        self._frame_seconds = (now - max(started, self._last_collect)) / count
        self._last_collect = now
        if "error" in result:
            raise self._error(result["error"])
        width, height = self.size
        data = np.frombuffer(base64.b64decode(result["data"]), dtype=np.uint8)
        return data.reshape(-1, height, width)

    def frames(self, total: int, batch: int = 64) -> Iterator[np.ndarray]:
        """Yield all `total` frames in batches, keeping one batch ahead so the page never waits for us."""
        asked = 0

        def ask() -> None:
            nonlocal asked
            # One frame first, to learn how long a frame takes; then batches of about BATCH_SECONDS,
            # which keeps round trips few and the hang budget short.
            size = 1 if self._frame_seconds is None else max(1, int(BATCH_SECONDS / self._frame_seconds))
            count = min(batch, total - asked, size)
            if count > 0:
                self.start(count)
                asked += count

        ask()
        while self._in_flight:
            frames = self.collect()
            while len(self._in_flight) < 2 and asked < total:
                ask()
            yield frames

    def _receive(self, value: dict) -> None:
        self._reports.append(value)

    def _wait(self, *, what: str, budget: float) -> dict:
        """Wait for the page's next report; a page silent past `budget` seconds is hung and is stopped."""
        deadline = time.perf_counter() + budget
        while not self._reports:
            if time.perf_counter() > deadline:
                self.close()
                raise SketchError(
                    f"{self.sketch.path}: {what} within {budget:.1f} s (an endless loop?); stopped it. "
                    "Raise --timeout if it is just slow"
                )
            self.page.wait_for_timeout(2)  # lets Playwright deliver the page's report meanwhile
        return self._reports.popleft()

    def _error(self, error: dict) -> SketchError:
        line = f":{error['line']}" if error.get("line") else ""
        frame = f" (frame {error['frame']})" if error.get("frame") else ""
        return SketchError(f"{self.sketch.path}{line}: {error['message']}{frame}")

    def _serve(self, route: Route) -> None:
        """Answer the page's requests from local files; anything else is refused (no network)."""
        path = route.request.url.removeprefix(ORIGIN).split("?", 1)[0]
        if path == "/sketch/index.html":
            body = INDEX.format(script=self.sketch.path.name).encode()
        elif path == "/vqart/p5.min.js":
            body = p5_library(self.p5_major).read_bytes()
        elif path == f"/sketch/{self.sketch.path.name}":
            body = self.sketch.source.encode("utf-8")
        elif path.startswith("/sketch/") and (asset := self._asset(path.removeprefix("/sketch/"))):
            body = asset.read_bytes()
        else:
            route.abort()
            return
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        route.fulfill(status=200, body=body, content_type=content_type)

    def _asset(self, relative: str) -> Path | None:
        """A file beside the sketch (images, fonts, data), never outside its folder."""
        folder = self.sketch.path.parent.resolve()
        path = (folder / relative).resolve()
        return path if path.is_file() and path.is_relative_to(folder) else None
