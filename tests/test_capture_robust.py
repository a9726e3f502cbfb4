"""Capture of real-world sketches: one sketch cannot take the run down, p5 1.x sketches are found by evidence,
async setup() runs on virtual time, and big canvases render at about the size that is kept."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqart.capture import capture, pipeline

pytestmark = pytest.mark.browser

GOOD = "function setup() { createCanvas(40, 40); }\nfunction draw() { background(frameCount * 3 % 256); }"
HANG_IN_SETUP = "function setup() { createCanvas(40, 40); while (true) {} }\nfunction draw() {}"
# Late in the run, when batches are already flowing: this used to block the whole run forever.
HANG_IN_DRAW = "function setup() { createCanvas(40, 40); }\nfunction draw() { background(9); if (frameCount == 40) while (true) {} }"
MEMORY = ("let hoard = [];\nfunction setup() { createCanvas(40, 40); }\n"
          "function draw() { background(0); if (frameCount > 5) for (;;) hoard.push(new Array(1e6).fill(frameCount)); }")


def sketches(folder: Path, **sources: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in sources.items():
        (folder / f"{name}.js").write_text(source)
    return folder


def frames_of(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("frame_*.png"))])


def no_browser_left() -> bool:
    from subprocess import run

    listing = run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return not any("chrom" in line.lower() and "--headless" in line for line in listing.splitlines())


@pytest.mark.parametrize("hang", [HANG_IN_SETUP, HANG_IN_DRAW], ids=["setup", "draw"])
def test_a_hung_sketch_in_the_middle_fails_alone_and_the_run_ends(tmp_path, hang):
    folder = sketches(tmp_path / "s", a_before=GOOD, b_hang=hang, c_after=GOOD)
    started = time.monotonic()
    results = capture([folder], tmp_path / "data", frames=80, size=(16, 16), timeout=3)
    assert time.monotonic() - started < 60
    assert [(r.sketch, r.status) for r in results] == [("a_before", "captured"), ("b_hang", "failed"),
                                                        ("c_after", "captured")]
    assert "endless loop" in results[1].message
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["a_before", "c_after"]


def test_a_worker_that_falls_silent_is_killed_with_its_browser_and_replaced(tmp_path, monkeypatch):
    # The worker's own per-frame limit is timeout + 2 s = 12 s; make the parent's watchdog fire first, at 6 s (the
    # good sketches' setup, on a slow machine, must fit in it).
    monkeypatch.setattr(pipeline, "SILENCE_MARGIN", -4.0)
    folder = sketches(tmp_path / "s", a_before=GOOD, b_hang=HANG_IN_DRAW, c_after=GOOD)
    results = capture([folder], tmp_path / "data", frames=80, size=(16, 16), timeout=10)
    assert [r.status for r in results] == ["captured", "failed", "captured"]
    assert "without a frame" in results[1].message
    assert not list((tmp_path / "data").glob(".*.tmp")), "the killed worker's half-written folder is left"
    assert no_browser_left()


@pytest.mark.slow
def test_a_sketch_that_eats_all_memory_fails_alone(tmp_path):
    folder = sketches(tmp_path / "s", a_before=GOOD, b_memory=MEMORY, c_after=GOOD)
    results = capture([folder], tmp_path / "data", frames=30, size=(16, 16), timeout=3)
    assert [r.status for r in results] == ["captured", "failed", "captured"]


# Sketches written for p5 1.x: each uses an API that p5 2.x removed.
CURVES_1X = """
function setup() { createCanvas(60, 60); }
function draw() {
  background(0); stroke(255); noFill(); curveTightness(sin(frameCount / 5));
  beginShape(); for (let i = 0; i < 6; i++) curveVertex(10 + i * 8, 30 + 20 * sin(i + frameCount / 7)); endShape();
}
"""
ARRAYS_1X = """
let xs = [];
function setup() { createCanvas(60, 60); }
function draw() {
  background(30); xs = append(xs, frameCount * 7 % 60); if (xs.length > 5) xs = subset(xs, 1);
  for (const x of xs) rect(x, 20, 4, 20);
}
"""
INSTANCE_1X = """
new p5((p) => {
  p.setup = () => p.createCanvas(60, 60);
  p.draw = () => { p.background(0); p.stroke(255); p.curve(0, 0, 10, p.frameCount % 60, 50, 30, 60, 60); };
});
"""


def test_p5_auto_retries_a_sketch_that_fails_on_a_removed_api_under_1x_and_says_why(tmp_path):
    folder = sketches(tmp_path / "s", curves=CURVES_1X, arrays=ARRAYS_1X, instance=INSTANCE_1X, modern=GOOD)
    results = {r.sketch: r for r in capture([folder], tmp_path / "data", frames=6, size=(16, 16))}
    assert all(r.status == "captured" for r in results.values()), [r.message for r in results.values()]
    for name, api in (("curves", "curveTightness"), ("arrays", "append"), ("instance", "curve")):
        manifest = json.loads((tmp_path / "data" / name / "manifest.json").read_text())
        assert manifest["p5_major"] == 1 and manifest["p5_version"].startswith("1.")
        assert f"failed on {api}, a p5 1.x API that 2.x removed" in manifest["p5_reason"]
        assert results[name].p5.startswith("1.")
    modern = json.loads((tmp_path / "data" / "modern" / "manifest.json").read_text())
    assert modern["p5_major"] == 2 and modern["p5_reason"] == "the default"


def test_an_explicit_p5_version_is_forced(tmp_path):
    folder = sketches(tmp_path / "s", curves=CURVES_1X)
    [forced] = capture([folder], tmp_path / "two", frames=4, size=(16, 16), p5=2)
    assert forced.status == "failed" and "curveTightness is not defined" in forced.message
    [one] = capture([folder], tmp_path / "one", frames=4, size=(16, 16), p5=1)
    assert one.status == "captured" and one.p5_reason == "--p5 1"


ASYNC_SETUP = """
let started;
async function setup() {
  createCanvas(40, 40);
  await new Promise((resolve) => setTimeout(resolve, 700));
  await new Promise((resolve) => requestAnimationFrame(resolve));
  await Promise.resolve();
  started = millis();
}
function draw() {
  background(typeof Date() === 'string' && Date().length > 10 ? 255 : 0);
  fill(started > 0 ? frameCount * 5 % 256 : 0);
  rect(10, 10, 20, 20);
}
"""


def test_an_async_setup_that_awaits_timers_and_frames_starts_on_virtual_time_deterministically(tmp_path):
    folder = sketches(tmp_path / "s", waits=ASYNC_SETUP)
    for out in ("a", "b"):
        [result] = capture([folder], tmp_path / out, frames=8, size=(16, 16), timeout=2)
        assert result.status == "captured", result.message
    a, b = frames_of(tmp_path / "a" / "waits"), frames_of(tmp_path / "b" / "waits")
    np.testing.assert_array_equal(a, b)
    assert (a[:, 0, 0] == 255).all()  # Date() without `new` gave a string
    assert len({f[8, 8] for f in a}) == 8  # setup finished (millis() moved on), then every frame differs


LIT_BOX = """
function setup() { createCanvas(720, 720, WEBGL); %s}
function draw() {
  background(40); ambientLight(60); directionalLight(255, 255, 255, 0.3, 0.6, -1); pointLight(200, 200, 200, 200, -200, 300);
  rotateX(frameCount * 0.03); rotateY(frameCount * 0.02); noStroke(); specularMaterial(220); sphere(150, 32, 24);
  translate(180, 0, 0); box(90);
}
"""


@pytest.mark.slow
def test_a_big_webgl_sketch_renders_at_twice_the_kept_size_and_matches_the_full_render(tmp_path):
    # pixelDensity(1) in the sketch itself keeps the full 720x720 render: today's reference.
    folder = sketches(tmp_path / "s", small=LIT_BOX % "", full=LIT_BOX % "pixelDensity(1); ")
    results = capture([folder], tmp_path / "data", frames=12, size=(64, 64), timeout=20)
    assert [r.status for r in results] == ["captured", "captured"]
    manifest = lambda name: json.loads((tmp_path / "data" / name / "manifest.json").read_text())
    assert manifest("full")["render_density"] == 1
    assert manifest("small")["render_density"] == pytest.approx(128 / 720)
    small, full = frames_of(tmp_path / "data" / "small"), frames_of(tmp_path / "data" / "full")
    mse = np.mean((small.astype(float) - full.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) >= 35
