"""Outgoing Socket.IO payloads: frames as raw 8-bit grayscale bytes (sent as binary attachments), and errors."""

from __future__ import annotations

import threading

import numpy as np
from flask_socketio import SocketIO

from vqart.server.validate import RequestId


class Outbox:
    """Sends events one at a time: a binary event is several Engine.IO messages, and two threads emitting to one
    client at once would interleave them and break the client's decoder (python-socketio issue #403)."""

    def __init__(self, socketio: SocketIO):
        self.socketio = socketio
        self._lock = threading.Lock()

    def send(self, event: str, payload: dict, to: str) -> None:
        """Emit `event` with `payload` to client `to`."""
        with self._lock:
            self.socketio.emit(event, payload, to=to)


def frames_message(rid: RequestId, frames: np.ndarray, **extra) -> dict:
    """A `frames` event: {id, frames: [{width, height, data}]}, data = row-major uint8 gray, width*height bytes."""
    h, w = frames.shape[1:]
    items = [
        {"width": int(w), "height": int(h), "data": np.ascontiguousarray(f, dtype=np.uint8).tobytes()} for f in frames
    ]
    return {"id": rid, **extra, "frames": items}


def error_message(rid: RequestId, code: str, message: str) -> dict:
    """An `error` event: {id, code, message}."""
    return {"id": rid, "code": code, "message": message}
