"""Plain HTTP endpoints: health, model info, and dataset frames as PNG thumbnails."""

from __future__ import annotations

import io

from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue
from PIL import Image

from vqart.errors import VqartError
from vqart.server.engine import Engine

bp = Blueprint("api", __name__)


def _engine() -> Engine:
    """The app's model engine."""
    return current_app.extensions["vqart"]


@bp.get("/health")
def health() -> ResponseReturnValue:
    """Liveness for a process supervisor or load balancer, and how many ready samples are pooled."""
    return jsonify(status="ok", pool=_engine().pooled())


@bp.get("/api/info")
def info() -> ResponseReturnValue:
    """The same facts as the `info` event."""
    return jsonify(_engine().info())


@bp.get("/api/frame/<sketch>/<int:index>.png")
def frame(sketch: str, index: int) -> ResponseReturnValue:
    """One dataset frame as a grayscale PNG (the live page's endpoint thumbnails)."""
    try:
        pixels = _engine().frame(f"{sketch}:{index}")
    except VqartError as err:
        return jsonify(code="not_found", message=str(err)), 404
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return Response(buf.getvalue(), mimetype="image/png", headers={"Cache-Control": "max-age=3600"})
