"""vqart as a user installs it: `pip install .` (not editable) into a fresh virtual environment, pinned by the
same constraints as `make setup` (so no other torch is pulled in); its capture and serve must work."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vqart import assets
from vqart.errors import VqartError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with vqart installed from this checkout, not editable."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin"


@pytest.mark.slow
@pytest.mark.browser
def test_an_installed_vqart_captures_and_serves(installed: Path, tiny_run: Path, tmp_path: Path):
    freeze = subprocess.run([installed / "python", "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    assert "torch==2.13.0" in freeze and "vqart @ file" in freeze and "nvidia" not in freeze
    sketch = tmp_path / "dots.js"
    sketch.write_text("function setup() { createCanvas(40, 40); }\nfunction draw() { background(frameCount * 9 % 256); }")
    # From another folder, so nothing of the checkout is found by accident.
    capture = subprocess.run([installed / "vqart", "capture", str(sketch), "--out", str(tmp_path / "data"),
                              "--frames", "5", "--size", "16"], capture_output=True, text=True, cwd=tmp_path)
    assert capture.returncode == 0, capture.stderr[-3000:]
    assert len(list((tmp_path / "data" / "dots").glob("frame_*.png"))) == 5
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        server = subprocess.Popen([installed / "vqart", "serve", str(tiny_run), "--port", "0"], stderr=err,
                                  stdout=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"http://127\.0\.0\.1:\d+/", log.read_text())):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        url = found.group(0)
        for path in ("", "vqart.js", "lib/p5.min.js", "lib/socket.io.min.js", "examples/"):
            assert urllib.request.urlopen(url + path).status == 200, path
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_missing_browser_files_are_one_line_saying_what_to_run(monkeypatch, tmp_path):
    (tmp_path / "package.json").write_text('{"vqart": {"libraries": {"p5.min.js": "p5/lib/p5.min.js"}}}')
    monkeypatch.setattr(assets, "web_root", lambda: tmp_path)
    assets.libraries.cache_clear()
    try:
        with pytest.raises(VqartError, match=r"p5\.min\.js is missing .*reinstall vqart from a checkout"):
            assets.library("p5.min.js")
    finally:
        assets.libraries.cache_clear()
