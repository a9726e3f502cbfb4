"""The browser side, in a real headless Chromium: the live page and the examples animate, vqart.js gives p5.Images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page

from conftest import eventually, served

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tiny_run: Path):
    """A running server on a free loopback port; yields its base URL."""
    with served(tiny_run) as url:
        yield url


@pytest.fixture
def page(browser):
    """A fresh page that records script errors, so a broken sketch fails the test."""
    p = browser.new_page(viewport={"width": 1100, "height": 760})
    p.errors = []
    p.on("pageerror", lambda err: p.errors.append(str(err)))
    p.on("console", lambda msg: msg.type == "error" and p.errors.append(msg.text))
    yield p
    p.close()


def canvas_pixels(page: Page) -> np.ndarray:
    """The sketch's canvas as an RGB array."""
    png = page.locator("canvas").first.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


# `until(ok)` in a page: wait until ok() holds, at most 20 s (a slow machine streams late, not never).
UNTIL = """() => {
    window.until = async (ok, ms = 20000) => {
        const end = Date.now() + ms;
        while (!ok() && Date.now() < end) await new Promise(r => setTimeout(r, 50));
    };
}"""


def assert_animates(page: Page) -> None:
    """The canvas changes in more than a few pixels, and then changes again: the first frames arrive (late, on a
    slow machine) and what they show keeps moving, rather than holding the first one."""
    for what in ("no frame arrived", "the canvas did not move on"):
        first = canvas_pixels(page)
        moved = lambda: (np.abs(first - canvas_pixels(page)).max(axis=2) > 8).mean() > 0.002
        assert eventually(page, moved, 20.0), what


def test_live_page_streams_and_animates(page, server):
    page.goto(server + "/")
    page.wait_for_function("document.getElementById('meta').textContent.includes('codes')", timeout=20000)
    assert page.locator("#thumbs img").count() == 24  # 3 sketches x 8 thumbnails
    assert_animates(page)
    page.click("[data-mode=sample]")
    page.locator("#thumbs img").nth(20).click()  # picking an endpoint switches to interpolate
    assert page.locator("[data-mode=interpolate]").get_attribute("class") == "on"
    assert_animates(page)
    assert not page.errors, page.errors


@pytest.mark.parametrize("example", ["tiles", "trails", "mirror"])
def test_examples_animate(page, server, example):
    page.goto(f"{server}/examples/{example}.html")
    page.wait_for_selector("canvas")
    assert_animates(page)
    assert not page.errors, page.errors


def test_client_resolves_p5_images_and_rejects_with_server_message(page, server):
    page.goto(server + "/examples/")
    page.add_script_tag(url="/lib/p5.min.js")
    page.add_script_tag(url="/lib/socket.io.min.js")
    page.add_script_tag(url="/vqart.js")
    page.evaluate(UNTIL)
    result = page.evaluate("""async () => {
        const model = await vqart.connect();
        const isImage = img => img instanceof p5.Image && img.width === 64 && img.height === 64;
        const samples = await model.sample({ n: 2, seed: 1 });
        const path = await model.interpolate('discs:0', samples[1], { steps: 4 });
        const seen = await model.reconstruct(samples[0]);
        const frames = [];
        const handle = model.stream({ mode: 'walk', fps: 30, frames: 16 }, img => frames.push(img));
        await until(() => frames.length > 0);
        await handle.stop();
        let error = null;
        try { await model.sample({ n: 1000 }); } catch (e) { error = [e.code, e.message]; }
        model.close();
        return { samples: samples.map(isImage), path: path.map(isImage), seen: isImage(seen),
                 streamed: frames.length > 0 && frames.every(isImage), error, info: model.info.frame_size };
    }""")
    assert result["samples"] == [True, True] and result["path"] == [True] * 4 and result["seen"]
    assert result["streamed"] and result["info"] == [64, 64]
    assert result["error"][0] == "out_of_range" and "n=1000" in result["error"][1]
    assert not page.errors, page.errors


@pytest.fixture(scope="module")
def motion_server(square_run: Path):
    """A server on a run that has a motion prior."""
    with served(square_run) as url:
        yield url


def test_the_live_page_motion_mode_keeps_the_canvas_changing(page, motion_server):
    page.goto(motion_server + "/")
    page.wait_for_function("document.getElementById('meta').textContent.includes('codes')", timeout=20000)
    assert page.locator("[data-mode=motion]").is_enabled()
    page.click("[data-mode=motion]")
    page.locator("#thumbs img").nth(3).click()  # in motion mode a thumbnail is the start frame
    page.select_option("#like", "low")
    assert page.locator("[data-mode=motion]").get_attribute("class") == "on"
    assert_animates(page)
    assert not page.errors, page.errors


def test_the_mirror_example_sets_a_drawing_moving(page, motion_server):
    page.goto(f"{motion_server}/examples/mirror.html")
    page.wait_for_selector("canvas")
    page.mouse.move(60, 60)
    page.mouse.down()
    page.mouse.move(200, 120, steps=10)
    page.mouse.up()
    assert_animates(page)
    assert not page.errors, page.errors


def test_vqart_js_streams_motion_from_a_drawing(page, motion_server):
    page.goto(f"{motion_server}/")
    page.evaluate(UNTIL)
    result = page.evaluate("""async () => {
        const model = await vqart.connect();
        const drawing = document.createElement('canvas');
        drawing.width = drawing.height = 64;
        const g = drawing.getContext('2d');
        g.fillStyle = '#000'; g.fillRect(0, 0, 64, 64); g.fillStyle = '#fff'; g.fillRect(8, 20, 12, 12);
        const frames = [];
        const handle = model.stream({ mode: 'motion', start: drawing, like: 'high', fps: 20, seed: 3 },
                                    img => frames.push(img));
        await handle.started;
        await until(() => frames.length >= 5);
        await handle.stop();
        model.close();
        return { motion: model.info.motion, frames: frames.length,
                 images: frames.every(f => f instanceof p5.Image && f.width === 64) };
    }""")
    assert result["motion"] and result["frames"] >= 5 and result["images"], result
