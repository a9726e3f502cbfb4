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
RENDER_SCALE = 2  # the canvas renders at about this many times the kept size, then is scaled down
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
        self.p5_major = p5 or sketch.p5_major()
        self.info: dict = {}
        self._reports: deque[dict] = deque()
        width, height = size
        config = {"seed": seed, "fps": fps, "width": width, "height": height, "timeoutMs": timeout * 1000,
                  "renderScale": RENDER_SCALE, "fullDensity": sketch.counts_pixels}
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

    def frames(self, total: int, read: bool = True) -> Iterator[np.ndarray]:
        """Yield all `total` frames as uint8 (count, H, W) batches (empty ones when `read` is False).

        The page is asked once and reports batches as it draws them: nothing here ever waits on a call into a
        page that may be stuck in an endless loop; each batch must arrive within the timeout (plus a margin).
        """
        self.page.evaluate("([total, read]) => __vqart.start(total, read)", [total, read])
        width, height = self.size
        received = 0
        while received < total:
            result = self._wait(what="a frame did not finish", budget=self.timeout + 2)
            if "error" in result:
                raise self._error(result["error"])
            received += result["count"]
            data = np.frombuffer(base64.b64decode(result["data"]), dtype=np.uint8)
            yield data.reshape(-1, height, width)

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
