"""Streams: each pushes `frames` events to one client at a steady fps until `stop` or disconnect."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator

import numpy as np
from flask_socketio import SocketIO

from vqart.errors import VqartError
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


class Streams:
    """The running streams, keyed by (client sid, request id), with per-client and total limits."""

    def __init__(self, socketio: SocketIO, outbox: Outbox, engine: Engine, per_client: int = 4, total: int = 64):
        self.socketio = socketio
        self.outbox = outbox
        self.engine = engine
        self.per_client = per_client
        self.total = total
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
        self.socketio.start_background_task(self._push, sid, req, stop)

    def stop(self, sid: str, rid: RequestId) -> None:
        """Stop one of the client's streams."""
        with self._lock:
            stop = self._running.pop((sid, rid), None)
        if stop is None:
            raise PayloadError("not_found", f"no running stream with id {rid!r}")
        stop.set()

    def stop_all(self, sid: str) -> None:
        """Stop every stream of a client that left."""
        with self._lock:
            keys = [key for key in self._running if key[0] == sid]
            stops = [self._running.pop(key) for key in keys]
        for stop in stops:
            stop.set()

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
