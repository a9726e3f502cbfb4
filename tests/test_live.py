"""The live training view: a real training in a thread, a real server, real Socket.IO clients and Chromium."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import eventually, tiny_config

from vqart.checkpoint import load_checkpoint
from vqart.cli import cli
from vqart.controls import parse_control
from vqart.errors import VqartError
from vqart.live import LiveView, align, project
from vqart.run import open_run
from vqart.server import create_app, serve_in_background, serve_live
from vqart.server.client import InOrderClient
from vqart.train import train


def test_controls_are_checked_in_one_place():
    assert parse_control("beta", 0.5).value == 0.5 and parse_control("pause").value is None
    for name, value, message in [("beta", -0.1, "beta must be >= 0"), ("lr_scale", 0, "lr_scale must be above 0"),
                                 ("lr_scale", 101, "at most 100"), ("lr_scale", "fast", "needs a number"),
                                 ("warp", 1, "unknown control 'warp'"), ("beta", float("nan"), "needs a number")]:
        with pytest.raises(VqartError, match=message):
            parse_control(name, value)


def test_projections_keep_their_axes_from_one_update_to_the_next():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(32, 8)) * np.array([5, 3, 1, 1, 1, 1, 1, 1])
    first, _ = project(codes, None, None)
    flipped = first @ np.array([[0.0, -1.0], [-1.0, 0.0]])  # what a fresh SVD may hand back: axes swapped, signs flipped
    np.testing.assert_allclose(flipped @ align(flipped, first), first, atol=1e-9)
    again, _ = project(codes + rng.normal(size=codes.shape) * 0.01, None, first)
    assert np.abs(again - first).max() < 0.5  # a small change moves the picture a little, never mirrors it


class Live:
    """A training running in a thread with a live view served on a free port, and a client following it."""

    def __init__(self, data: Path, out: Path, **train_settings):
        self.view = LiveView()
        self.server = serve_live(self.view, port=0)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        config = tiny_config(**{"epochs": 10_000, "patience": 10_000, "batch_size": 4, **train_settings})
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._train, args=(data, out, config), daemon=True)
        self.thread.start()
        self.updates: list[dict] = []
        self.got: list[tuple[str, dict]] = []
        self.client = InOrderClient(reconnection=False)
        self.client.on("update", self._update)
        for name in ("control_applied", "error"):
            self.client.on(name, lambda payload, name=name: self.got.append((name, payload)))
        self.client.connect(self.url, transports=["websocket"], wait_timeout=10)
        self.client.emit("follow", {"n": 0})

    def _train(self, data: Path, out: Path, config) -> None:
        try:
            train(data, out, config=config, minutes=1.5, device="cpu", observers=[self.view])
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err

    def _update(self, update: dict) -> bool:
        self.updates.append(update)
        return True  # the acknowledgement that lets the publisher send the next update

    def points(self) -> list[dict]:
        return [p for u in self.updates for p in u["points"]]

    def wait(self, test, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while not (found := test()):
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        return found

    def control(self, name: str, value=None, rid: str = "c") -> dict:
        mark = len(self.got)
        self.client.emit("control", {"id": rid, "name": name, "value": value})
        return self.wait(lambda: next((p for n, p in self.got[mark:] if p.get("id") == rid), None), f"control {name}")

    def close(self) -> None:
        self.client.disconnect()
        self.server.shutdown()


@pytest.mark.slow
def test_controls_act_on_the_running_training_and_are_recorded(frames_dir, tmp_path):
    live = Live(frames_dir, tmp_path / "run")
    try:
        live.wait(lambda: len(live.points()) >= 5, "scalars")
        applied = live.control("beta", 2.0, "b")
        assert applied["name"] == "beta" and applied["new"] == 2.0 and applied["step"] > 0
        after = live.wait(lambda: [p for p in live.points() if p["step"] > applied["step"] + 2], "steps with beta 2")
        for p in after:  # the loss the trainer minimises now weighs the commitment by the new beta
            assert p["beta"] == 2.0 and p["loss"] == pytest.approx(p["recon"] + 0.1 * p["edge"] + 2.0 * p["reg"], rel=1e-4)
        assert live.control("lr_scale", 0.5, "l")["new"] == 0.5
        assert live.control("pause", rid="p")["new"] is True
        time.sleep(1.0)
        step = max(p["step"] for p in live.points())
        time.sleep(1.0)
        assert max(p["step"] for p in live.points()) <= step + 1, "steps went on while paused"
        assert live.updates[-1]["status"] == "paused"
        live.control("resume", rid="r")
        live.wait(lambda: max(p["step"] for p in live.points()) > step + 3, "steps after resume")
        live.control("stop", rid="s")
        live.thread.join(timeout=30)
        assert not live.thread.is_alive() and live.error is None
    finally:
        live.close()
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    controls = [(e["name"], e["old"], e["new"]) for e in events if e["event"] == "control"]
    assert controls[0][0] == "beta" and controls[0][2] == 2.0
    assert [c[0] for c in controls] == ["beta", "lr_scale", "pause", "resume", "stop"]
    assert all({"step", "time"} <= set(e) for e in events)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]
    assert state["beta_override"] == 2.0 and state["lr_user"] == 0.5  # a resumed run keeps the overrides
    resumed = train(out=tmp_path / "run", device="cpu", resume=True, epochs=state["epoch"] + 1)
    assert load_checkpoint(resumed / "checkpoints" / "last.pt")["state"]["beta_override"] == 2.0


@pytest.mark.slow
def test_bad_controls_are_refused_and_change_nothing(frames_dir, tmp_path):
    live = Live(frames_dir, tmp_path / "run")
    try:
        live.wait(lambda: live.points(), "scalars")
        for name, value, code in [("beta", -1, "out_of_range"), ("lr_scale", 0, "out_of_range"),
                                  ("lr_scale", 1000, "out_of_range"), ("explode", None, "bad_request")]:
            reply = live.control(name, value, rid=f"bad-{name}-{value}")
            assert reply["code"] == code and reply["message"], reply
        live.control("stop", rid="s")
        live.thread.join(timeout=30)
    finally:
        live.close()
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [e["name"] for e in events if e["event"] == "control"] == ["stop"]


def test_a_port_in_use_is_one_line(frames_dir, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = CliRunner().invoke(cli, ["train", "--data", str(frames_dir), "--out", str(tmp_path / "r"), "--live",
                                          "--port", str(port)])
    finally:
        taken.close()
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.browser
def test_a_browser_watches_the_curves_and_the_codebook_change(frames_dir, tmp_path, browser):
    live = Live(frames_dir, tmp_path / "run")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(live.url + "/")
        page.wait_for_function("document.getElementById('status').textContent === 'training'", timeout=30000)
        page.wait_for_function("document.getElementById('recons').src.startsWith('data:image')", timeout=30000)
        shot = lambda selector: page.locator(selector).screenshot()
        curves, usage = shot("#chart-loss"), shot("#usage")
        assert eventually(page, lambda: shot("#chart-loss") != curves), "the curves did not move"
        # The histogram redraws with the heavy snapshots, a few seconds apart (more on a slow machine).
        assert eventually(page, lambda: shot("#usage") != usage), "the codebook histogram did not change"
        assert page.locator("#controls").is_visible() and page.locator("[data-control=reseed]").is_visible()
        page.fill("#beta", "0.5")
        page.click("[data-apply=beta]")
        page.wait_for_function("window.__vqartApplied && window.__vqartApplied.name === 'beta'", timeout=10000)
        assert page.evaluate("window.__vqartLatencies().scalars.length") > 0  # updates were taken in full
        assert not errors, errors
    finally:
        page.close()
        live.control("stop", rid="s")
        live.thread.join(timeout=30)
        live.close()


@pytest.mark.browser
def test_vqart_serve_shows_how_a_finished_run_trained(tiny_run, browser):
    app, _ = create_app(open_run(tiny_run, device="cpu"))
    server = serve_in_background(app)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    try:
        page.goto(f"http://127.0.0.1:{server.server_port}/train")
        page.wait_for_function("document.getElementById('status').textContent === 'finished'", timeout=20000)
        assert "4 epochs" in page.locator("#points").text_content()
        assert page.locator("#controls").is_hidden()  # nothing to control in a finished run
        assert page.evaluate("document.getElementById('progression').naturalWidth") > 0
        assert not errors, errors
    finally:
        page.close()
        server.shutdown()
        app.extensions["vqart"].close()
