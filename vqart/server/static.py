"""Static files, only from web/: the live page, the JS client, the examples, and p5 + socket.io from node_modules."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_from_directory
from flask.typing import ResponseReturnValue

WEB = Path(__file__).resolve().parents[2] / "web"

# Fixed routes to the npm files the page needs (no CDN, so it works offline); nothing else of node_modules is served.
LIBRARIES = {
    "p5.min.js": WEB / "node_modules/p5/lib/p5.min.js",
    "socket.io.min.js": WEB / "node_modules/socket.io-client/dist/socket.io.min.js",
}

bp = Blueprint("web", __name__)


@bp.get("/")
def index() -> ResponseReturnValue:
    """The live page."""
    return send_from_directory(WEB, "index.html")


@bp.get("/vqart.js")
def client() -> ResponseReturnValue:
    """The p5.js bridge."""
    return send_from_directory(WEB, "vqart.js")


@bp.get("/lib/<name>")
def library(name: str) -> ResponseReturnValue:
    """p5.js or the socket.io client, from the npm packages `make setup` installs."""
    path = LIBRARIES.get(name)
    if path is None:
        abort(404)
    if not path.is_file():
        abort(503, description=f"{path.relative_to(WEB)} is missing; run `make setup` (npm ci in web/)")
    return send_from_directory(path.parent, path.name)


@bp.get("/examples/")
@bp.get("/examples/<path:name>")
def example(name: str = "index.html") -> ResponseReturnValue:
    """An example sketch; send_from_directory refuses any path that leaves web/examples."""
    return send_from_directory(WEB / "examples", name)
