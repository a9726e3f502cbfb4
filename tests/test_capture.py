"""`vqart capture` end to end with a real headless Chromium and real files: frames, manifest, skip/force, errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from vqart import __version__
from vqart.capture import capture, parse_size
from vqart.capture.browser import find_browser, install_command, launch
from vqart.cli import cli
from vqart.errors import VqartError

pytestmark = pytest.mark.browser

MOVING = """
function setup() { createCanvas(120, 120); }
function draw() {
  background(20);
  fill(255);
  circle(60 + 40 * sin(millis() / 300), 60 + 40 * cos(millis() / 450), 30 + 20 * noise(frameCount / 10));
  circle(random(120), random(120), 10);
}
"""

def write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(source)
    return path


def test_capture_writes_gray_pngs_and_manifest(tmp_path):
    path = write(tmp_path / "sketches", "moving.js", MOVING)
    [result] = capture([path], tmp_path / "data", frames=12, size=(32, 32), console=None)
    assert result.status == "captured" and result.frames == 12
    folder = tmp_path / "data" / "moving"
    pngs = sorted(folder.glob("*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:05d}.png" for i in range(12)]
    images = [Image.open(p) for p in pngs]
    assert {(im.mode, im.size) for im in images} == {("L", (32, 32))}
    assert len({im.tobytes() for im in images}) == 12  # it moves
    manifest = json.loads((folder / "manifest.json").read_text())
    for key in ("sketch", "sketch_sha256", "p5_version", "width", "height", "fps", "seed", "frames", "captured_at", "timeout"):
        assert key in manifest
    assert manifest["frames"] == 12 and manifest["p5_version"].startswith("2.")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["moving"]  # nothing temporary left


def test_recapture_is_byte_identical_and_skip_and_force(tmp_path):
    path = write(tmp_path / "sketches", "moving.js", MOVING)
    capture([path], tmp_path / "a", frames=8, size=(32, 32))
    [again] = capture([path], tmp_path / "a", frames=8, size=(32, 32))
    assert again.status == "skipped"
    [forced] = capture([path], tmp_path / "a", frames=8, size=(32, 32), force=True)
    assert forced.status == "captured"
    capture([path], tmp_path / "b", frames=8, size=(32, 32))
    for png in sorted((tmp_path / "a" / "moving").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "b" / "moving" / png.name).read_bytes()
    path.write_text(MOVING + "\n// edited\n")
    [edited] = capture([path], tmp_path / "a", frames=8, size=(32, 32))
    assert edited.status == "captured"  # a changed sketch is not skipped


def test_cli_reports_failures_keeps_going_and_stops_hangs(tmp_path):
    folder = tmp_path / "sketches"
    write(folder, "good.js", MOVING)
    write(folder, "hang.js", "function setup() { createCanvas(50, 50); }\nfunction draw() { if (frameCount == 3) while (true) {} }")
    write(folder, "throws.js", "function setup() { createCanvas(50, 50); }\nfunction draw() {\n  throw new Error('boom');\n}")
    write(folder, "blank.js", "function setup() { createCanvas(50, 50); }\nfunction draw() { background(90); }")
    out = tmp_path / "data"
    result = CliRunner().invoke(cli, ["capture", str(folder), "--out", str(out), "--frames", "6", "--size", "16", "--timeout", "3"])
    assert result.exit_code == 1
    assert "throws.js:3: Error: boom" in result.output
    assert "hang.js" in result.output and "endless loop" in result.output
    assert "identical" in result.output  # the blank sketch is captured with a warning
    assert "2 of 4 sketches failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["blank", "good"]  # no half-written folders


@pytest.mark.slow
def test_bundled_sketches_all_run_and_move(tmp_path):
    sketches = Path(__file__).resolve().parents[1] / "sketches"
    results = capture([sketches], tmp_path, frames=4, size=(32, 32))
    assert len(results) >= 12
    assert [(r.sketch, r.status, r.message) for r in results if r.status != "captured" or r.message] == []


def test_cli_help_version_and_bad_size():
    runner = CliRunner()
    assert runner.invoke(cli, ["--version"]).output.strip().endswith(__version__)
    help_text = runner.invoke(cli, ["capture", "--help"]).output
    assert "--frames" in help_text and "--size" in help_text and "--timeout" in help_text
    bad = runner.invoke(cli, ["capture", "sketches", "--size", "big"])
    assert bad.exit_code == 1 and "--size" in bad.output


def test_parse_size():
    assert parse_size("64") == (64, 64) and parse_size("96x64") == (96, 64)
    with pytest.raises(VqartError):
        parse_size("64x")


def test_missing_browser_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("VQART_BROWSER", str(tmp_path / "nope"))
    with pytest.raises(VqartError, match="VQART_BROWSER"):
        find_browser()
    monkeypatch.setattr("vqart.capture.browser._is_debian", lambda: False)
    assert "playwright install chromium" in install_command()
    monkeypatch.setattr("vqart.capture.browser._is_debian", lambda: True)
    monkeypatch.setattr("vqart.capture.browser._is_root", lambda: False)
    assert install_command() == "sudo apt-get install chromium"
    monkeypatch.setattr("vqart.capture.browser.find_browser", lambda playwright=None: None)
    with pytest.raises(VqartError, match="sudo apt-get install chromium"):
        launch(None)
