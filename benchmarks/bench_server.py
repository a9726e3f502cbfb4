"""Live server load: python-socketio clients on loopback against `vqart serve` running in its own process.

Latency of `sample` n=1 (from the pool, and with an explicit seed, computed by the prior), of `interpolate`
steps=16, then 16 clients streaming at 30 fps each, in walk mode (the live page's default) and in sample
mode (every frame a new prior sample) and in motion mode (every client's stream advanced together, one batched
call per tick): frames/s held, dropped frames, failed requests, how late frames arrive against their schedule,
`sample` latency while they stream, and for motion how evenly the clients are served and how much of the
offline batched rollout's throughput (measured here, in the same run, with the server's one thread) reaches
them. The run has its spatial and motion priors, as a user's would: the generation and motion benchmarks' run,
else one trained briefly here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np

import torch

from common import prior_run
from vqart import generate
from vqart.prior.motion import advance, train_motion
from vqart.run import open_run
from vqart.server.client import InOrderClient

TITLE = "Live server: Socket.IO latency and 16 streams at 30 fps, with the prior (loopback, CPU, 64x64)"
STREAMS, FPS = 16, 30


@contextmanager
def _server(run: Path, scratch: Path):
    """`vqart serve RUN --port 0` in its own process (so clients do not share its GIL); yields the URL."""
    log = scratch / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "vqart.cli", "serve", str(run), "--port", "0"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while not (match := re.search(r"http://127\.0\.0\.1:\d+", log.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vqart serve did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        url = match.group(0)
        while json.load(urllib.request.urlopen(url + "/health"))["pool"] < 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # let the sample pool fill, as it would on a server that has been up a moment
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class Client:
    """One Socket.IO connection that times request -> reply and records stream frames."""

    def __init__(self, url: str):
        self.sio = InOrderClient(reconnection=False)
        self.replies: dict = {}
        self.done = threading.Condition()
        self.frames: list[tuple[float, int]] = []  # (arrival time, seq) of stream frames
        self.errors: list[dict] = []
        self.sio.on("frames", self._reply)
        self.sio.on("streaming", self._reply)
        self.sio.on("error", self._error)
        self.sio.connect(url, transports=["websocket"], wait_timeout=20)

    def _reply(self, msg: dict) -> None:
        if "seq" in msg:
            self.frames.append((time.perf_counter(), msg["seq"]))
            return
        with self.done:
            self.replies[msg["id"]] = time.perf_counter()
            self.done.notify_all()

    def _error(self, msg: dict) -> None:
        self.errors.append(msg)
        self._reply({k: v for k, v in msg.items() if k != "seq"})

    def latency_ms(self, event: str, payload: dict, rid: str) -> float:
        """Round trip of one request, in ms."""
        start = time.perf_counter()
        self.sio.emit(event, {"id": rid, **payload})
        with self.done:
            if not self.done.wait_for(lambda: rid in self.replies, timeout=30):
                self.errors.append({"id": rid, "code": "timeout"})
                return float("nan")
            return (self.replies.pop(rid) - start) * 1000

    def close(self) -> None:
        self.sio.disconnect()


def _latencies(client: Client, event: str, payload: dict, count: int, seeded: bool = False) -> np.ndarray:
    """`count` sequential round trips of one request type, in ms."""
    return np.array([
        client.latency_ms(event, {**payload, **({"seed": i} if seeded else {})}, f"{event}-{i}") for i in range(count)
    ])


def _streams(url: str, seconds: float, prober: Client | None, mode: str) -> dict:
    """16 clients stream `mode` at 30 fps for `seconds` while `prober` (if any) keeps asking for samples; what
    they saw."""
    clients = [Client(url) for _ in range(STREAMS)]
    try:
        for i, c in enumerate(clients):
            c.sio.emit("stream", {"id": f"s{i}", "mode": mode, "fps": FPS, "seed": i})
        started = time.monotonic()
        probe = []
        while time.monotonic() - started < seconds:
            if prober is not None:
                probe.append(prober.latency_ms("sample", {"n": 1}, f"probe-{len(probe)}"))
            time.sleep(0.05)
        for i, c in enumerate(clients):
            c.sio.emit("stop", {"id": f"s{i}"})
        rates, dropped, late = [], 0, []
        for c in clients:
            if len(c.frames) < 2:
                rates.append(0.0)
                continue
            times = np.array([t for t, _ in c.frames])
            seqs = np.array([s for _, s in c.frames])
            rates.append((len(times) - 1) / (times[-1] - times[0]))
            dropped += int(seqs[-1] - seqs[0] + 1 - len(seqs))
            # Lateness against the stream's own schedule, anchored on its earliest frame relative to that schedule.
            schedule = times - seqs / FPS
            late.extend((schedule - schedule.min()) * 1000)
        return {"rate": min(rates), "median": float(np.median(rates)), "rates": rates, "dropped": dropped,
                "failed": sum(len(c.errors) for c in clients),
                "late_p99": float(np.percentile(late, 99)) if late else float("nan"), "probe": np.array(probe)}
    finally:
        for c in clients:
            c.close()


def _row(measure: str, value: float, unit: str, target: str = "", ok: bool | None = None) -> dict:
    return {"measure": measure, "value": round(float(value), 2), "unit": unit, "target": target,
            "ok": None if ok is None else bool(ok)}


def _stream_rows(mode: str, load: dict, targets: bool) -> list[dict]:
    """The table rows of one streaming load; walk has targets, sample (prior-bound on 2 cores) is reported."""
    check = lambda ok: ok if targets else None
    return [
        _row(f"{STREAMS} {mode} streams at {FPS} fps: frames/s held (worst client)", load["rate"], "frames/s",
             f">= {FPS - 1}" if targets else "", check(load["rate"] >= FPS - 1)),
        *([] if targets else [_row(f"{STREAMS} {mode} streams: frames/s per client (median)", load["median"],
                                   "frames/s")]),
        _row(f"{STREAMS} {mode} streams: dropped frames", load["dropped"], "frames", "== 0" if targets else "",
             check(load["dropped"] == 0)),
        _row(f"{STREAMS} {mode} streams + prober: failed requests", load["failed"], "requests", "== 0",
             load["failed"] == 0),
        _row(f"{STREAMS} {mode} streams: frame lateness vs schedule, p99", load["late_p99"], "ms",
             "<= 100" if targets else "", check(load["late_p99"] <= 100)),
    ]


def _offline_motion(run_dir: Path, seconds: float) -> float:
    """Frames/s of STREAMS motion rollouts advanced together offline (decoding included), on one thread as the
    server runs: the ceiling the server's motion streams are measured against."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = open_run(run_dir, device="cpu")
        prior = generate.cached_motion(run)
        states = []
        for i in range(STREAMS):
            g = generate.make_generator(run, i)
            past, values, sketch = generate.motion_start(run, prior, None, g)
            states.append(prior.state(past, values, sketch, 1.0, g))
        step = lambda: advance(prior, states)
        step()
        frames, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            frames += len(step())
        return frames / elapsed
    finally:
        torch.set_num_threads(threads)


def _motion_rows(load: dict, offline: float) -> list[dict]:
    """Fairness and throughput of the motion streams against the offline batched rollouts."""
    rates = np.array(load["rates"])
    median, total = float(np.median(rates)), float(rates.sum())
    spread = float(np.abs(rates / median - 1).max()) if median > 0 else float("inf")
    return [
        _row(f"{STREAMS} motion streams: frames/s per client (median)", median, "frames/s"),
        _row(f"{STREAMS} motion streams: farthest client from the median", 100 * spread, "%", "<= 20", spread <= 0.2),
        _row(f"{STREAMS} motion streams: total frames/s", total, "frames/s"),
        _row(f"offline: {STREAMS} rollouts advanced together, one thread", offline, "frames/s"),
        _row(f"{STREAMS} motion streams: total over offline", 100 * total / offline, "%", ">= 80", total >= 0.8 * offline),
        _row(f"{STREAMS} motion streams: failed requests and errors", load["failed"], "", "== 0", load["failed"] == 0),
    ]


def run(quick: bool = False) -> list[dict]:
    """Start a server on loopback, measure, stop it."""
    scratch = Path(tempfile.mkdtemp(prefix="vqart-bench-server-"))
    try:
        run_dir = prior_run(scratch, quick)
        if not (run_dir / "motion.pt").exists():
            train_motion(open_run(run_dir, device="cpu"), minutes=0.1 if quick else 1.0)
        offline = _offline_motion(run_dir, 3 if quick else 15)
        with _server(run_dir, scratch) as url:
            client = Client(url)
            try:
                assert json.load(urllib.request.urlopen(url + "/api/info"))["sampler"] == "prior"
                pool = _latencies(client, "sample", {"n": 1}, 40 if quick else 200)
                seeded = _latencies(client, "sample", {"n": 1}, 10 if quick else 50, seeded=True)
                sketches = json.load(urllib.request.urlopen(url + "/api/info"))["sketches"]
                a, b = (f"{name}:{count // 2}" for name, count in list(sketches.items())[:2])
                interp = _latencies(client, "interpolate", {"a": a, "b": b, "steps": 16}, 10 if quick else 50)
                walk = _streams(url, 6 if quick else 20, client, "walk")
                sample = _streams(url, 6 if quick else 20, client, "sample")
                # Alone: the prober's samples would take turns on the model thread with the ticker it is measuring.
                motion = _streams(url, 6 if quick else 20, None, "motion")
                walk["failed"] += len(client.errors)
            finally:
                client.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    p50, p99 = (lambda x: float(np.nanpercentile(x, 50))), (lambda x: float(np.nanpercentile(x, 99)))
    return [
        _row("sample n=1 from the pool, p50 (1 client)", p50(pool), "ms", "<= 10", p50(pool) <= 10),
        _row("sample n=1 from the pool, p99 (1 client)", p99(pool), "ms"),
        _row("sample n=1 with a seed (the prior, computed), p50", p50(seeded), "ms"),
        _row("sample n=1 with a seed (the prior, computed), p99", p99(seeded), "ms"),
        _row("interpolate steps=16, p50 (1 client)", p50(interp), "ms", "<= 30", p50(interp) <= 30),
        _row("interpolate steps=16, p99 (1 client)", p99(interp), "ms"),
        *_stream_rows("walk", walk, targets=True),
        _row(f"sample n=1 (pool) p50 while {STREAMS} walk streams run", p50(walk["probe"]), "ms"),
        _row(f"sample n=1 (pool) p99 while {STREAMS} walk streams run", p99(walk["probe"]), "ms"),
        *_stream_rows("sample", sample, targets=False),
        *_motion_rows(motion, offline),
    ]


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
