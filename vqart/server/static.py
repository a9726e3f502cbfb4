"""Static files, only from the web folder (vqart.assets): the live pages, the JS client, the examples, and the
npm libraries it lists (no CDN, so everything works offline)."""

from __future__ import annotations

from flask import Blueprint, abort, send_from_directory
from flask.typing import ResponseReturnValue

from vqart.assets import libraries, library, web_root
from vqart.errors import VqartError

bp = Blueprint("web", __name__)


def index() -> ResponseReturnValue:
    """The live page (each app puts its own page at /)."""
    return send_from_directory(web_root(), "index.html")


@bp.get("/train")
def training_page() -> ResponseReturnValue:
    """The training view: curves, codebook, reconstructions (live while a training runs with --live)."""
    return send_from_directory(web_root(), "train.html")


@bp.get("/train.js")
def training_script() -> ResponseReturnValue:
    """The training view's script."""
    return send_from_directory(web_root(), "train.js")


@bp.get("/vqart.js")
def client() -> ResponseReturnValue:
    """The p5.js bridge."""
    return send_from_directory(web_root(), "vqart.js")


@bp.get("/lib/<name>")
def lib(name: str) -> ResponseReturnValue:
    """One of the npm libraries web/package.json lists (p5.js, socket.io, uPlot); nothing else of node_modules."""
    if name not in libraries():
        abort(404)
    try:
        path = library(name)
    except VqartError as err:
        abort(503, description=str(err))
    return send_from_directory(path.parent, path.name)


@bp.get("/examples/")
@bp.get("/examples/<path:name>")
def example(name: str = "index.html") -> ResponseReturnValue:
    """An example sketch; send_from_directory refuses any path that leaves web/examples."""
    return send_from_directory(web_root() / "examples", name)
