"""The training view's server side: /train and its data, from a running training (LiveView) or a finished run's
files, and the Socket.IO events that stream it to pages and carry their controls back to the trainer.

Pages get one `update` at a time: the publisher sends a page the points, events, rows and snapshot it has not
seen, and nothing more until the page acknowledges it (Engine.IO's queue per client has no bound, so a slow page
is skipped rather than fed). A control is checked in one place (vqart.controls), queued for the trainer, and
when the trainer has applied it every page gets `control_applied` at once.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import Blueprint, Flask, abort, current_app, jsonify, request, send_from_directory
from flask.typing import ResponseReturnValue
from flask_socketio import SocketIO
from PIL import Image

from vqart.controls import parse_control
from vqart.errors import VqartError
from vqart.live import LiveView
from vqart.plots import preview_grid
from vqart.server.validate import PayloadError, request_id

if TYPE_CHECKING:
    from vqart.run import Run

log = logging.getLogger("vqart")
PICTURES = ("progression.png", "training_curve.png", "codebook_usage.png")
PUBLISH_SECONDS = 0.1

bp = Blueprint("training", __name__)


def png_url(image: np.ndarray) -> str:
    """A uint8 (H, W) or (H, W, 3) image as a PNG data URL."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def code_colours(codes: np.ndarray, scale: int = 8) -> np.ndarray:
    """A code grid (h, w) in false colour: each code its own hue (golden-angle steps), upscaled."""
    hue = (codes.astype(np.float64) * 0.618033988749895) % 1.0
    rgb = np.stack([0.5 + 0.45 * np.cos(2 * np.pi * (hue - shift)) for shift in (0.0, 1 / 3, 2 / 3)], axis=-1)
    return np.kron((rgb * 255).astype(np.uint8), np.ones((scale, scale, 1), dtype=np.uint8))


def heavy_json(heavy: dict | None) -> dict | None:
    """A heavy snapshot as the page takes it: pictures as PNG data URLs, arrays as rounded lists."""
    if heavy is None:
        return None
    r = lambda a: None if a is None else np.round(np.asarray(a, dtype=np.float64), 4).tolist()
    out = {"step": heavy["step"], "epoch": heavy["epoch"],
           "reconstructions": png_url(preview_grid(heavy["originals"], heavy["recons"])), "levels": []}
    if "code_map" in heavy:
        out["code_map"] = png_url(code_colours(heavy["code_map"]))
    for level in heavy["levels"]:
        out["levels"].append({
            "codes": r(level["codes"]), "usage": np.asarray(level["usage"]).tolist(),
            "dead": (np.asarray(level["usage"]) == 0).tolist(), "latents": r(level["latents"]),
            "labels": None if level["labels"] is None else np.asarray(level["labels"]).tolist(),
        })
    return out


class LiveSource:
    """The data of a running training, published to every page by one thread."""

    live = True

    @property
    def path(self) -> Path | None:
        """The run folder being written (its pictures are served), once training has started."""
        return self.view.trainer.out if self.view.trainer is not None else None

    def __init__(self, view: LiveView, socketio: SocketIO):
        self.view, self.socketio = view, socketio
        self._clients: dict[str, dict] = {}  # sid -> {"n": last serial sent, "rows": rows sent, "heavy": step, "busy"}
        self._lock = threading.Lock()
        self._heavy_cache: tuple[dict | None, dict | None] = (None, None)
        self._seen_controls = 0
        threading.Thread(target=self._publish, name="vqart-live-publisher", daemon=True).start()

    def history(self) -> dict:
        """Everything so far, for a page that has just opened."""
        info, rows, heavy, status = self.view.snapshot()
        points, events, newest = self.view.since(0)
        return {"live": True, "status": status, "info": info, "rows": rows, "points": points, "events": events,
                "heavy": self._heavy(heavy), "n": newest}

    def _heavy(self, heavy: dict | None) -> dict | None:
        """The JSON of a heavy snapshot, made once per snapshot."""
        cached, made = self._heavy_cache
        if cached is not heavy:  # the snapshot itself, not its id(), which a later one may reuse
            made = heavy_json(heavy)
            self._heavy_cache = (heavy, made)
        return made

    def join(self, sid: str, n: int, rows: int) -> None:
        """A page that holds the points and events up to serial `n` and `rows` epoch rows starts getting updates
        (on a reconnect too: it gets what it missed, never what it has)."""
        with self._lock:
            self._clients[sid] = {"n": n, "rows": rows, "heavy": None, "busy": False, "info": None,
                                  "status": None}

    def leave(self, sid: str) -> None:
        """A page went away."""
        with self._lock:
            self._clients.pop(sid, None)

    def control(self, payload: Any) -> None:
        """Check a control and queue it for the trainer; PayloadError (sent back as `error`) when it cannot be."""
        if not isinstance(payload, dict):
            raise PayloadError("bad_payload", "control needs an object: {id, name, value}")
        try:
            control = parse_control(payload.get("name"), payload.get("value"), request_id(payload))
        except VqartError as err:  # a number for beta or lr_scale out of its range, or not a control at all
            numeric = payload.get("name") in ("beta", "lr_scale") and isinstance(payload.get("value"), (int, float))
            raise PayloadError("out_of_range" if numeric else "bad_request", str(err)) from None
        trainer = self.view.trainer
        if trainer is None or self.view.status in ("finished", "stopped", "interrupted"):
            raise PayloadError("bad_request", f"the training is not running ({self.view.status}); controls act on a "
                               "running training")
        trainer.controls.put(control)

    def _publish(self) -> None:
        """Every PUBLISH_SECONDS: controls applied to every page at once; to each page that took its last update,
        what it has not seen yet."""
        while True:
            with self.view.changed:
                self.view.changed.wait(PUBLISH_SECONDS)
            with self._lock:
                clients = list(self._clients.items())
            self._send_controls(clients)
            if not clients:
                continue  # nobody watching: no pictures to encode
            info, rows, heavy, status = self.view.snapshot()
            heavy_out = self._heavy(heavy)
            for sid, state in clients:
                if state["busy"]:
                    continue  # it has not taken the last update yet: skip it, it gets everything next time
                points, events, newest = self.view.since(state["n"])
                fresh = heavy_out is not None and state["heavy"] != heavy_out["step"]
                new_info = info != state["info"]  # a page opened before the training started has none yet
                news = points or events or len(rows) != state["rows"] or fresh or new_info
                if not news and status == state["status"]:  # a pause changes only the status
                    continue
                update = {"status": status, "n": newest, "points": points, "events": events,
                          "rows": rows[state["rows"]:], "heavy": heavy_out if fresh else None,
                          "info": info if new_info else None}
                state.update(busy=True, n=newest, rows=len(rows), heavy=heavy_out["step"] if heavy_out else None,
                             info=info, status=status)
                self.socketio.emit("update", update, to=sid, callback=lambda *_, s=state: s.update(busy=False))

    def _send_controls(self, clients: list[tuple[str, dict]]) -> None:
        """control_applied {id, name, old, new, step} to every page, for each control applied since the last look."""
        _, events, _ = self.view.since(self._seen_controls)
        for event in events:
            self._seen_controls = max(self._seen_controls, event["n"])
            if event["event"] == "control":
                message = {k: event.get(k) for k in ("id", "name", "old", "new", "step", "time")}
                for sid, _ in clients:
                    self.socketio.emit("control_applied", message, to=sid)


class FileSource:
    """A finished run's training, read from its folder: metrics.jsonl, events.jsonl and its pictures."""

    live = False

    def __init__(self, run: Run):
        self.path, self.model = run.path, run.model

    def history(self) -> dict:
        """The run's epoch rows, events and pictures."""
        read = lambda name: [json.loads(line) for line in (self.path / name).read_text().splitlines() if line.strip()] \
            if (self.path / name).is_file() else []
        config = json.loads((self.path / "config.json").read_text())
        model, quantized = self.model, self.model.quantized  # as open_run built it: old runs read as they were
        info = {"run": self.path.name, "quantized": quantized, "quantizer": model.config.quantizer,
                "sketches": list(config.get("sketches", {})),
                "levels": model.levels if quantized else 0,
                "codebook_size": model.codebook_size if quantized else 0}
        return {"live": False, "status": "finished", "info": info, "rows": read("metrics.jsonl"), "points": [],
                "events": read("events.jsonl"), "heavy": None, "n": 0}


def _source() -> LiveSource | FileSource:
    return current_app.extensions["vqart_training"]


@bp.get("/api/train/history")
def history() -> ResponseReturnValue:
    """The training so far (or the finished run), as the training view first draws it."""
    return jsonify(_source().history())


@bp.get("/api/train/picture/<name>")
def picture(name: str) -> ResponseReturnValue:
    """One of the run's pictures (progression, curves, codebook usage), as its folder holds it now."""
    path = _source().path
    if name not in PICTURES or path is None or not (path / name).is_file():
        abort(404)
    return send_from_directory(path, name, max_age=0)


def register_training(app: Flask, socketio: SocketIO, source: LiveSource | FileSource) -> None:
    """Attach the training view's routes and, for a live source, its Socket.IO events."""
    app.extensions["vqart_training"] = source
    app.register_blueprint(bp)
    if not isinstance(source, LiveSource):
        return

    @socketio.on("follow")
    def follow(payload: Any = None) -> None:
        count = lambda key: payload.get(key) if isinstance(payload, dict) and type(payload.get(key)) is int else 0
        source.join(request.sid, max(0, count("n")), max(0, count("rows")))

    @socketio.on("control")
    def control(payload: Any = None) -> None:
        try:
            source.control(payload)
        except PayloadError as err:
            socketio.emit("error", {"id": request_id(payload), "code": err.code, "message": str(err)}, to=request.sid)

    @socketio.on("disconnect")
    def left(*_) -> None:
        source.leave(request.sid)
