"""The in-page harness with a real headless Chromium: virtual time, seeding, p5 modes and versions, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vqart.capture.page import SketchError, SketchPage
from vqart.capture.sketch import Sketch

pytestmark = pytest.mark.browser

# Each frame paints a white square only while p5's clock is exactly what vqart promises.
CLOCK_CHECK = """
function setup() { createCanvas(100, 100); noStroke(); }
function draw() {
  background(0);
  const exact = deltaTime === 1000 / 30 && Math.abs(millis() - frameCount * 1000 / 30) < 1e-9;
  fill(exact ? 255 : 0);
  rect(0, 0, 50, 100);
  fill(frameCount * 10 % 256);
  rect(50, 0, 50, 100);
}
"""
RANDOM = """
function setup() { createCanvas(60, 60); noStroke(); }
function draw() {
  background(noise(frameCount / 10) * 255);
  fill(255 - random(100));
  rect(random(60), random(60), 15, 15);
}
"""
# Heavy on purpose, and driven by millis() only, so a slow page would drift if time were real.
MILLIS_HEAVY = """
function setup() { createCanvas(200, 200); }
function draw() {
  background(0);
  const t = millis();
  for (let i = 0; i < 2000; i++) {
    stroke((i * 7 + t) % 255);
    line(100, 100, 100 + 90 * cos(i + t / 900), 100 + 90 * sin(i * 1.1 + t / 700));
  }
}
"""




def sketch(folder: Path, name: str, source: str) -> Sketch:
    path = folder / name
    path.write_text(source)
    return Sketch(path, source)


def run(browser, s: Sketch, frames: int = 6, **kwargs) -> tuple[dict, np.ndarray]:
    with SketchPage(browser, s, **kwargs) as page:
        info = page.load()
        return info, np.concatenate(list(page.frames(frames)))


def test_clock_is_exact_and_frame_rate_in_sketch_is_ignored(browser, tmp_path):
    for major in (1, 2):
        source = CLOCK_CHECK.replace("noStroke(); }", "noStroke(); frameRate(7); }")
        _, frames = run(browser, sketch(tmp_path, f"clock{major}.js", source), frames=10, size=(20, 20), p5=major)
        assert (frames[:, :, :8] == 255).all(), f"p5 {major}: deltaTime/millis() not exact"
        assert list(frames[:, 10, 15]) == [i * 10 % 256 for i in range(1, 11)]  # one draw per frame


def test_millis_sketch_is_identical_on_a_slow_machine(browser, tmp_path):
    s = sketch(tmp_path, "heavy.js", MILLIS_HEAVY)
    _, fast = run(browser, s, frames=8)
    with SketchPage(browser, s) as page:
        page.load()
        # Make the renderer 6x slower: real time would now pass very differently per frame.
        page.context.new_cdp_session(page.page).send("Emulation.setCPUThrottlingRate", {"rate": 6})
        slow = np.concatenate(list(page.frames(8)))
    assert len({f.tobytes() for f in fast}) == 8
    assert np.array_equal(fast, slow)


def test_seed_controls_random_and_noise(browser, tmp_path):
    s = sketch(tmp_path, "random.js", RANDOM)
    a, b, c = (run(browser, s, seed=seed)[1] for seed in (0, 0, 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_non_square_webgl_instance_mode_graphics_and_p5_1(browser, tmp_path):
    webgl = "function setup() { createCanvas(160, 90, WEBGL); }\nfunction draw() { background(40); rotateY(frameCount / 5); normalMaterial(); box(50); }"
    info, frames = run(browser, sketch(tmp_path, "gl.js", webgl), size=(48, 27))
    assert frames.shape == (6, 27, 48) and info["webgl"] and len({f.tobytes() for f in frames}) == 6

    instance = "new p5((p) => {\n  let g;\n  p.setup = () => { p.createCanvas(80, 80); g = p.createGraphics(40, 40); };\n  p.draw = () => { g.background(p.frameCount * 20 % 256); p.image(g, 0, 0, 80, 80); };\n});"
    info, frames = run(browser, sketch(tmp_path, "inst.js", instance), size=(16, 16))
    assert info["mode"] == "instance" and list(frames[:, 8, 8]) == [i * 20 % 256 for i in range(1, 7)]

    marked = "// p5 1\nfunction setup() { createCanvas(50, 50); }\nfunction draw() { background(frameCount); }"
    assert run(browser, sketch(tmp_path, "v1.js", marked))[0]["version"].startswith("1.")
    preload = "let n;\nfunction preload() { n = 3; }\nfunction setup() { createCanvas(50, 50); }\nfunction draw() { background(n * frameCount); }"
    info, frames = run(browser, sketch(tmp_path, "pre.js", preload))
    assert info["version"].startswith("1.") and list(frames[:, 0, 0]) == [3, 6, 9, 12, 15, 18]
    assert run(browser, sketch(tmp_path, "two.js", preload.replace("n = 3;", "")), p5=2)[0]["version"].startswith("2.")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("function setup() { createCanvas(50, 50); }\nfunction draw() {\n  background(0;\n}", r"bad\.js:3: SyntaxError"),
        ("function setup() {\n  createCanvas(50, 50);\n  null.x = 1;\n}\nfunction draw() {}", r"bad\.js:3: TypeError"),
        ("function setup() { createCanvas(50, 50); }\nfunction draw() {\n  if (frameCount == 4) nope();\n}", r"bad\.js:3: ReferenceError: nope is not defined \(frame 4\)"),
        ("// p5 1\nfunction setup() {\n  createCanvas(50, 50);\n  null.x = 1;\n}\nfunction draw() {}", r"bad\.js:4: TypeError"),
        ("function setup() {\n  while (true) {}\n}", r"bad\.js: setup\(\) did not finish within 5\.0 s \(an endless loop\?\)"),
        ("let x = 1;", r"no p5 sketch started"),
    ],
)
def test_errors_name_file_line_and_message(browser, tmp_path, source, expected):
    with pytest.raises(SketchError, match=expected):
        run(browser, sketch(tmp_path, "bad.js", source), frames=8, timeout=3)
