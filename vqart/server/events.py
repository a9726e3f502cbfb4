"""The Socket.IO events: each request is validated, answered with `frames`/`info`, or refused with `error`."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import request
from flask_socketio import SocketIO

from vqart.errors import VqartError
from vqart.server import validate
from vqart.server.engine import Engine
from vqart.server.messages import Outbox, error_message, frames_message
from vqart.server.streams import Streams

log = logging.getLogger("vqart")

MAX_IN_FLIGHT = 4  # per client: enough to pipeline, too few for one client to starve the others
MAX_CLIENTS = 256  # each connection holds a few threads; beyond this, new ones are refused


class InFlight:
    """Counts each client's unanswered requests so one client cannot queue unbounded work."""

    def __init__(self, limit: int):
        self.limit = limit
        self._count: Counter[str] = Counter()
        self._lock = threading.Lock()

    def enter(self, sid: str) -> bool:
        """Admit one more request from `sid`, or False when it already has `limit` in flight."""
        with self._lock:
            if self._count[sid] >= self.limit:
                return False
            self._count[sid] += 1
            return True

    def leave(self, sid: str) -> None:
        """Mark one of `sid`'s requests answered."""
        with self._lock:
            self._count[sid] -= 1
            if self._count[sid] <= 0:
                del self._count[sid]


def _payload(args: tuple) -> Any:
    """The single payload of an event; anything else (none, several) is passed on to be refused."""
    return args[0] if len(args) == 1 else list(args)


def register(socketio: SocketIO, engine: Engine) -> None:
    """Attach every event handler to `socketio`."""
    outbox = Outbox(socketio)
    streams = Streams(socketio, outbox, engine)
    in_flight = InFlight(MAX_IN_FLIGHT)

    def emit(event: str, payload: dict) -> None:
        """Reply to the client whose event is being handled."""
        outbox.send(event, payload, request.sid)

    def answer(name: str, work: Callable[[Any], tuple[str, dict]]) -> None:
        """Handle event `name` with `work(payload) -> (reply event, reply)`; every failure becomes an `error` event."""

        def handler(*args) -> None:
            payload = _payload(args)
            rid = validate.request_id(payload)
            if not in_flight.enter(request.sid):
                busy = f"at most {MAX_IN_FLIGHT} requests in flight per client; wait for replies"
                emit("error", error_message(rid, "busy", busy))
                return
            try:
                emit(*work(payload))
            except validate.PayloadError as err:
                emit("error", error_message(rid, err.code, str(err)))
            except VqartError as err:
                emit("error", error_message(rid, "bad_request", str(err)))
            except Exception:
                log.exception("%s request %r failed", name, rid)
                emit("error", error_message(rid, "internal", f"{name} failed inside the server; see its log"))
            finally:
                in_flight.leave(request.sid)

        socketio.on_event(name, handler)

    def info(payload: Any) -> tuple[str, dict]:
        return "info", {"id": validate.parse_info(payload), **engine.info()}

    def sample(payload: Any) -> tuple[str, dict]:
        req = validate.parse_sample(payload)
        return "frames", frames_message(req.id, engine.sample(req.n, req.temperature, req.seed, req.sampler))

    def interpolate(payload: Any) -> tuple[str, dict]:
        req = validate.parse_interpolate(payload)
        return "frames", frames_message(req.id, engine.interpolate(req.a, req.b, req.steps, req.method))

    def reconstruct(payload: Any) -> tuple[str, dict]:
        req = validate.parse_reconstruct(payload)
        return "frames", frames_message(req.id, engine.reconstruct(req.image))

    def stream(payload: Any) -> tuple[str, dict]:
        req = validate.parse_stream(payload)
        streams.start(request.sid, req)
        return "streaming", {"id": req.id, "mode": req.mode, "fps": req.fps}

    def stop(payload: Any) -> tuple[str, dict]:
        req = validate.parse_stop(payload)
        streams.stop(request.sid, req.id)
        return "stopped", {"id": req.id}

    for name, work in [
        ("info", info),
        ("sample", sample),
        ("interpolate", interpolate),
        ("reconstruct", reconstruct),
        ("stream", stream),
        ("stop", stop),
    ]:
        answer(name, work)

    @socketio.on("*")
    def unknown(event: Any, *args) -> None:
        known = "info, sample, interpolate, reconstruct, stream or stop"
        message = f"unknown event {str(event)[:40]!r}; use {known}"
        emit("error", error_message(validate.request_id(_payload(args)), "unknown_event", message))

    clients: set[str] = set()
    clients_lock = threading.Lock()

    @socketio.on("connect")
    def joined(*_) -> None:
        with clients_lock:
            if len(clients) >= MAX_CLIENTS:
                raise ConnectionRefusedError(f"the server has its maximum of {MAX_CLIENTS} clients; try later")
            clients.add(request.sid)

    @socketio.on("disconnect")
    def left(*_) -> None:
        with clients_lock:
            clients.discard(request.sid)
        streams.stop_all(request.sid)
