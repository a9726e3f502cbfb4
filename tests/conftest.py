"""Shared fixtures: a small synthetic data/ folder, a run trained on it for a few seconds, a headless Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from synthetic import moving_shapes, write_sketch

from vqart.config import Config, ModelConfig, TrainConfig

torch.set_num_threads(1)  # the machine is shared: tests must not grab every core


def tiny_config(**train: object) -> Config:
    """A model and schedule small enough to train in seconds on one CPU thread."""
    # Residual codebooks, whose machinery (k-means, EMA, dead codes) most tests exercise; test_fsq covers the default.
    model = ModelConfig(channels=16, res_blocks=1, quantizer="vq", codebook_size=32, code_dim=16, levels=2,
                        dead_after=4, kmeans_iters=4)
    settings = {"epochs": 4, "batch_size": 8, "lr": 5e-3, "warmup_steps": 5,
                "precision": "fp32", **train}
    return Config(model=model, train=TrainConfig(**settings))


@pytest.fixture(scope="session")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data/ folder with three 64x64 sketches of 40 frames each (real PNGs + manifest.json)."""
    root = tmp_path_factory.mktemp("data")
    for kind, name in enumerate(("discs", "boxes", "orbits")):
        write_sketch(root, name, moving_shapes(40, (64, 64), kind))
    return root


@pytest.fixture(scope="session")
def tiny_run(frames_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run folder trained for a few seconds on `frames_dir`; open it with vqart.run.open_run."""
    from vqart.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train(frames_dir, out, config=tiny_config(), device="cpu")


@contextmanager
def served(run_path: Path, allowed_origins: tuple[str, ...] = ()) -> Iterator[str]:
    """A real server (werkzeug, threaded) on a free loopback port for a run folder; yields its base URL."""
    from vqart.run import open_run
    from vqart.server import create_app, serve_in_background

    app, _ = create_app(open_run(run_path, device="cpu"), allowed_origins=allowed_origins)
    server = serve_in_background(app)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        app.extensions["vqart"].close()


@pytest.fixture(scope="session")
def square_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run (2 residual levels) on two sketches of a square sliding one code cell per frame, with a motion prior
    trained for 800 steps (at 250 its rollouts could lose the square): a world simple enough to learn in a minute."""
    from synthetic import sliding_square

    from vqart.prior.motion import train_motion
    from vqart.run import open_run
    from vqart.train import train

    data = tmp_path_factory.mktemp("squares")
    write_sketch(data, "high", sliding_square(96, row=12))
    write_sketch(data, "low", sliding_square(96, row=40))
    # The square repeats every 16 frames, so every held-out frame has a twin: keep them (this is about motion).
    run = train(data, tmp_path_factory.mktemp("run") / "square", config=tiny_config(epochs=12, twin_threshold=0.0),
                device="cpu")
    metrics = train_motion(open_run(run, device="cpu"), minutes=30, max_steps=800, dim=32, depth=2, heads=2)
    assert metrics["train_steps"] == 800
    return run


def eventually(page, ok, seconds: float = 30.0) -> bool:
    """Whether `ok()` holds within `seconds`, asked every quarter second while `page` runs (a slow machine is late,
    not wrong: a fixed wait would fail it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        page.wait_for_timeout(250)
        if ok():
            return True
    return False


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for one test module (found and launched as `vqart capture` does)."""
    from playwright.sync_api import sync_playwright

    from vqart.capture.browser import launch

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()
