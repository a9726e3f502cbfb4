"""Training: it learns, it survives NaNs, Ctrl-C + --resume equals an uninterrupted run, checkpoints are safe."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
import torch
from conftest import tiny_config
from rich.console import Console

import vqart.train as train_module
from vqart.checkpoint import load_checkpoint, save_checkpoint
from vqart.errors import VqartError
from vqart.observers import Observer
from vqart.run import open_run
from vqart.train import beta_at, lr_at, train

QUIET = Console(stderr=True, quiet=True)


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_short_training_lowers_the_loss_and_keeps_most_codes_alive(tiny_run):
    rows = _rows(tiny_run)
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["val_mse"] < rows[0]["val_mse"]
    assert rows[-1]["active_codes"] >= 0.75 * 32
    assert rows[-1]["perplexity"] > 2  # mostly black frames: one code rightly covers most cells


def test_schedules_warm_up_then_decay():
    cfg = tiny_config(lr=1.0, warmup_steps=10)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_at(cfg, 9, 0.0) == pytest.approx(1.0)
    assert lr_at(cfg, 50, 0.5) == pytest.approx(0.505)
    assert lr_at(cfg, 99, 1.0) == pytest.approx(0.01)
    assert beta_at(cfg, 0) == pytest.approx(0.05)
    assert beta_at(cfg, 15) == pytest.approx(0.15)
    assert beta_at(cfg, 60) == pytest.approx(0.25)


def _interrupt_on_call(monkeypatch, target: str, call: int) -> None:
    """Send ourselves SIGINT (a real Ctrl-C) during the `call`-th call of vqart.train.<target>."""
    original = getattr(train_module, target)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, target, wrapper)


@pytest.mark.slow
@pytest.mark.parametrize(("target", "call"), [("evaluate", 2), ("edge_l1", 9)], ids=["epoch-boundary", "mid-epoch"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(frames_dir, tmp_path, monkeypatch, target, call):
    cfg = tiny_config(epochs=3)
    handler_before = signal.getsignal(signal.SIGINT)
    whole = train(frames_dir, tmp_path / "whole", config=cfg, device="cpu")
    with monkeypatch.context() as patch:
        _interrupt_on_call(patch, target, call)
        with pytest.raises(KeyboardInterrupt):
            train(frames_dir, tmp_path / "split", config=cfg, device="cpu")
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handler was put back
    stopped = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert stopped["state"]["epoch"] < 3
    split = train(out=tmp_path / "split", device="cpu", resume=True)
    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    n_train = sum(s["train"] for s in json.loads((whole / "config.json").read_text())["split"].values())
    assert a["state"]["step"] == b["state"]["step"] == 3 * (n_train // cfg.train.batch_size)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    assert [r["val_mse"] for r in _rows(whole)] == [r["val_mse"] for r in _rows(split)]


def test_a_nan_batch_is_skipped_and_a_nan_streak_restores_the_last_good_state(frames_dir, tmp_path, monkeypatch):
    original = train_module.edge_l1
    calls = {"n": 0}

    def poisoned(recon, x):
        calls["n"] += 1
        if calls["n"] in (8, 9, 10, 12):  # three in a row trigger the restore, the fourth is a lone skip
            return original(recon, x) * float("nan")
        return original(recon, x)

    monkeypatch.setattr(train_module, "edge_l1", poisoned)
    run = train(frames_dir, tmp_path / "nan", config=tiny_config(epochs=3, nan_limit=3), device="cpu")
    rows = _rows(run)
    assert sum(r["skipped_steps"] for r in rows) == 4
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["state"]["lr_scale"] == 0.5
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert rows[-1]["val_mse"] < rows[0]["val_mse"]


def test_a_non_finite_model_is_never_saved(tiny_run, tmp_path):
    ckpt = load_checkpoint(tiny_run / "checkpoints" / "best.pt")
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][key] = ckpt["model"][key].clone().fill_(float("inf"))
    with pytest.raises(ValueError, match="NaN or inf"):
        save_checkpoint(tmp_path / "bad.pt", ckpt)
    assert not list(tmp_path.iterdir())


class Payload:
    """Anything that is not a tensor or plain value: unpickling it would run code."""


def test_a_checkpoint_holding_a_pickled_object_is_refused(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ckpt = load_checkpoint(run / "checkpoints" / "best.pt")
    torch.save({**ckpt, "extra": Payload()}, run / "checkpoints" / "best.pt")
    with pytest.raises(VqartError, match="refusing to load"):
        open_run(run, device="cpu")


def test_a_checkpoint_of_another_model_shape_is_refused(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    config["model"]["codebook_size"] = 64
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(VqartError, match="does not fit this model's shape"):
        open_run(run, device="cpu")


def test_a_truncated_checkpoint_is_a_clear_error(tiny_run, tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes((tiny_run / "checkpoints" / "last.pt").read_bytes()[:1000])
    with pytest.raises(VqartError, match="unreadable or truncated"):
        load_checkpoint(bad)


class Steps(Observer):
    """Records every optimizer step a session publishes."""

    def __init__(self) -> None:
        self.seen: list = []

    def on_step(self, trainer, step) -> None:
        self.seen.append(step)


def _follows_the_timed_cosine(cfg, steps: list, budget: float, warm_start: int = 0) -> None:
    """Each step's rate was set from the time before the step: it lies between the cosine fitted to `budget`
    seconds at the step's end and at the previous step's end (exact; no margin that depends on the machine)."""
    for before, step in zip(steps, steps[1:]):
        low = lr_at(cfg, step.step - 1, step.elapsed / budget, warm_start)
        high = lr_at(cfg, step.step - 1, before.elapsed / budget, warm_start)
        assert low * (1 - 1e-6) <= step.lr <= high * (1 + 1e-6), (step.step, step.lr, low, high)


def test_minutes_bound_the_wall_time(frames_dir, tmp_path):
    cfg, steps = tiny_config(epochs=1000, patience=1000), Steps()
    run = train(frames_dir, tmp_path / "timed", config=cfg, minutes=0.05, device="cpu", observers=[steps])
    rows, state = _rows(run), load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    budget = 0.05 * 60
    assert all(r["elapsed"] - r["seconds"] < budget for r in rows) and state["elapsed"] >= budget  # stopped on time
    assert len(rows) < 1000
    _follows_the_timed_cosine(cfg, steps.seen, budget)  # the cosine decays over the minutes, not the 1000 epochs


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_loses_only_the_work_since_the_last_checkpoint(frames_dir, tmp_path):
    import os
    import subprocess
    import sys
    import time

    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nchannels = 16\nres_blocks = 1\ncodebook_size = 32\ncode_dim = 16\nlevels = 2\n"
        "[train]\nbatch_size = 2\nepochs = 3\nwarmup_steps = 5\nprecision = 'fp32'\ncheckpoint_seconds = 0.05\n"
    )
    whole = train(frames_dir, tmp_path / "whole", config=config, device="cpu")
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "vqart.cli", "train", "--data", str(frames_dir), "--out", str(out), "--device", "cpu"]
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # as this process trains: the same float sums, bit for bit
    proc = subprocess.Popen([*args, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=one_thread)
    try:
        deadline = time.monotonic() + 120
        while True:  # until a checkpoint taken in the middle of an epoch after the first is on disk
            assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
            try:
                state = load_checkpoint(out / "checkpoints" / "last.pt")["state"]
            except VqartError:
                state = {"epoch": 0, "batch": 0}
            if state["epoch"] >= 1 and state["batch"] > 0:
                break
            time.sleep(0.01)
    finally:
        proc.kill()  # SIGKILL: nothing runs on the way out
        proc.wait()
    saved = load_checkpoint(out / "checkpoints" / "last.pt")["state"]
    resumed = train(out=out, device="cpu", resume=True)
    a = load_checkpoint(whole / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert b["state"]["step"] == a["state"]["step"] > saved["step"]
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)


def test_resume_with_minutes_trains_that_much_more_on_a_refitted_schedule(frames_dir, tmp_path):
    cfg = tiny_config(epochs=10_000, patience=10_000)
    run = train(frames_dir, tmp_path / "timed", config=cfg, minutes=0.03, device="cpu")
    spent = load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    assert spent["elapsed"] >= spent["budget"] == 0.03 * 60  # the first session spent its budget: its cosine ended
    resumed = Steps()
    train(out=run, device="cpu", resume=True, minutes=0.03, observers=[resumed])
    rows = _rows(run)
    assert len(resumed.seen) >= 3, "a resumed timed run must train, not stop after one step"
    assert all(b["step"] > a["step"] for a, b in zip(rows, rows[1:])), "every row is an epoch that trained"
    state = load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    assert state["budget"] == pytest.approx(spent["elapsed"] + 0.03 * 60) and state["elapsed"] >= state["budget"]
    # Refitted to the whole run, the cosine stands part way down again (warming up anew, since the first session
    # had finished); not refitted, every resumed step would stay at its 1% floor.
    _follows_the_timed_cosine(cfg, resumed.seen, state["budget"], state["warm_start"])
    floor = lr_at(cfg, cfg.train.warmup_steps, 1.0)
    assert max(step.lr for step in resumed.seen) > 2 * floor
