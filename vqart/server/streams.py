"""Streams: each pushes `frames` events to one client at a steady fps until `stop` or disconnect. Motion streams
of every client advance together, one batched model call per tick (MotionTicker); the others each have a thread."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from flask_socketio import SocketIO

from vqart.errors import VqartError
from vqart.prior.motion import MotionState
from vqart.server.engine import Engine
from vqart.server.messages import Outbox, error_message, frames_message
from vqart.server.validate import MAX_SEED, PayloadError, RequestId, Stream

log = logging.getLogger("vqart")

SAMPLE_CHUNK = 8  # frames computed at once in sample mode: amortises the model call, keeps the first frame quick


def frame_source(engine: Engine, req: Stream) -> Iterator[np.ndarray]:
    """The endless sequence of frames a stream shows."""
    if req.mode == "sample":
        for k in itertools.count():
            seed = None if req.seed is None else (req.seed + k) % (MAX_SEED + 1)
            yield from engine.sample(SAMPLE_CHUNK, req.temperature, seed, req.sampler)
    elif req.mode == "interpolate":
        there = engine.interpolate(req.a, req.b, req.steps, req.method)
        yield from itertools.cycle(np.concatenate([there, there[-2:0:-1]]))  # there and back, no repeated ends
    else:
        yield from itertools.cycle(engine.walk(req.frames, req.seed, req.source, req.temperature, req.sampler))


@dataclass
class _Motion:
    """One client's motion stream in the ticker: its state, schedule and where its frames go."""

    sid: str
    rid: RequestId
    state: MotionState
    period: float
    next_t: float
    seq: int = 0


class MotionTicker:
    """Every client's motion stream, advanced together: at each tick one batched model call makes the next frame of
    every stream that is due. A stream whose ticks were missed while the CPU was busy skips them (its seq jumps);
    when all are late, all are advanced at every tick, so clients share the model's throughput evenly."""

    def __init__(self, outbox: Outbox, engine: Engine, on_failed: Callable[[str, RequestId], None]):
        self.outbox, self.engine, self.on_failed = outbox, engine, on_failed
        self._streams: dict[tuple[str, RequestId], _Motion] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, sid: str, rid: RequestId, state: MotionState, fps: float) -> None:
        """Start advancing a stream; its first frame is due now."""
        with self._wake:
            self._streams[(sid, rid)] = _Motion(sid, rid, state, 1.0 / fps, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vqart-motion", daemon=True)
                self._thread.start()
            self._wake.notify()

    def remove(self, sid: str, rid: RequestId) -> None:
        """Stop advancing a stream (a frame already being made is not sent)."""
        with self._wake:
            self._streams.pop((sid, rid), None)

    def _due(self) -> list[_Motion]:
        """Wait until some stream is due; return every stream due by now."""
        with self._wake:
            while True:
                now = time.monotonic()
                if self._streams:
                    first = min(m.next_t for m in self._streams.values())
                    if first <= now:
                        return [m for m in self._streams.values() if m.next_t <= now + 0.002]
                self._wake.wait(first - now if self._streams else None)

    def _run(self) -> None:
        """The ticker: advance the due streams together, send each its frame, schedule its next."""
        while True:
            due = self._due()
            try:
                frames = self.engine.advance([m.state for m in due])
            except Exception:  # noqa: BLE001 - a broken model call ends those streams, not the server
                log.exception("motion streams failed")
                for m in due:
                    self.remove(m.sid, m.rid)
                    self.on_failed(m.sid, m.rid)
                    self.outbox.send("error", error_message(m.rid, "internal", "the stream failed; see the server log"), m.sid)
                continue
            now = time.monotonic()
            for m, frame in zip(due, frames):
                with self._wake:
                    if self._streams.get((m.sid, m.rid)) is not m:
                        continue  # stopped meanwhile
                self.outbox.send("frames", frames_message(m.rid, frame[None], seq=m.seq), m.sid)
                m.seq += 1
                m.next_t += m.period
                missed = int((now - m.next_t) / m.period)
                if missed > 0:
                    m.seq += missed
                    m.next_t += missed * m.period


class Streams:
    """The running streams, keyed by (client sid, request id), with per-client and total limits."""

    def __init__(self, socketio: SocketIO, outbox: Outbox, engine: Engine, per_client: int = 4, total: int = 64):
        self.socketio = socketio
        self.outbox = outbox
        self.engine = engine
        self.per_client = per_client
        self.total = total
        self.motion = MotionTicker(outbox, engine, on_failed=self._forget)
        self._running: dict[tuple[str, RequestId], threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, sid: str, req: Stream) -> None:
        """Start pushing frames for `req` to client `sid`."""
        key = (sid, req.id)
        with self._lock:
            if key in self._running:
                raise PayloadError(
                    "bad_payload", f"a stream with id {req.id!r} is already running; stop it or use a new id"
                )
            if sum(1 for s, _ in self._running if s == sid) >= self.per_client:
                raise PayloadError("busy", f"at most {self.per_client} streams per client; stop one first")
            if len(self._running) >= self.total:
                raise PayloadError("busy", f"the server is running its maximum of {self.total} streams; try later")
            stop = self._running[key] = threading.Event()
        if req.mode != "motion":
            self.socketio.start_background_task(self._push, sid, req, stop)
            return
        try:
            state = self.engine.motion_state(req.start, req.like, req.temperature, req.seed)
        except VqartError:
            self._forget(sid, req.id)
            raise
        with self._lock:  # unless it was stopped (or its client left) while its start was being made
            if self._running.get(key) is stop:
                self.motion.add(sid, req.id, state, req.fps)

    def _forget(self, sid: str, rid: RequestId) -> None:
        """A stream that ended on its own no longer counts against the limits."""
        with self._lock:
            self._running.pop((sid, rid), None)

    def stop(self, sid: str, rid: RequestId) -> None:
        """Stop one of the client's streams."""
        with self._lock:
            stop = self._running.pop((sid, rid), None)
        if stop is None:
            raise PayloadError("not_found", f"no running stream with id {rid!r}")
        stop.set()
        self.motion.remove(sid, rid)

    def stop_all(self, sid: str) -> None:
        """Stop every stream of a client that left."""
        with self._lock:
            keys = [key for key in self._running if key[0] == sid]
            stops = [self._running.pop(key) for key in keys]
        for stop in stops:
            stop.set()
        for _, rid in keys:
            self.motion.remove(sid, rid)

    def _push(self, sid: str, req: Stream, stop: threading.Event) -> None:
        """The stream's loop: one frame per tick; ticks missed while busy are skipped (seq jumps), never burst."""
        period = 1.0 / req.fps
        seq = 0
        next_t = time.monotonic()
        try:
            for frame in frame_source(self.engine, req):
                delay = next_t - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                if stop.is_set():
                    break
                late = -delay
                if late > period:
                    missed = int(late / period)
                    seq += missed
                    next_t += missed * period
                self.outbox.send("frames", frames_message(req.id, frame[None], seq=seq), sid)
                seq += 1
                next_t += period
        except VqartError as err:
            code = err.code if isinstance(err, PayloadError) else "bad_request"
            self.outbox.send("error", error_message(req.id, code, str(err)), sid)
        except Exception:
            log.exception("stream %r failed", req.id)
            self.outbox.send("error", error_message(req.id, "internal", "the stream failed; see the server log"), sid)
        finally:
            with self._lock:
                if self._running.get((sid, req.id)) is stop:
                    del self._running[(sid, req.id)]
