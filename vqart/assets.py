"""The one place that finds vqart's browser-side files: the live pages, vqart.js, the examples and the npm
libraries (p5.js 2.x and 1.x, the socket.io client, uPlot), which web/package.json lists under "vqart".

An installed vqart carries its own copy (setup.py puts web/ into the package as vqart/_web); a checkout
uses web/ itself, where `make setup` ran `npm ci`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from vqart.errors import VqartError

PACKAGED = Path(__file__).resolve().parent / "_web"
CHECKOUT = Path(__file__).resolve().parents[1] / "web"


def web_root() -> Path:
    """The folder holding index.html, vqart.js, examples/ and node_modules/."""
    return PACKAGED if PACKAGED.is_dir() else CHECKOUT


@cache
def libraries() -> dict[str, str]:
    """Library name (as served at /lib/NAME) -> its path under node_modules/."""
    manifest = web_root() / "package.json"
    try:
        return json.loads(manifest.read_text())["vqart"]["libraries"]
    except (OSError, ValueError, KeyError) as err:
        raise VqartError(f"{manifest} is missing or damaged ({err}); reinstall vqart") from None


def library(name: str) -> Path:
    """The file of one library; VqartError with the command that installs it when it is not there."""
    relative = libraries().get(name)
    if relative is None:
        raise VqartError(f"unknown library {name!r}; vqart ships {', '.join(libraries())}")
    path = web_root() / "node_modules" / relative
    if not path.is_file():
        fix = ("run `make setup` (npm ci in web/)" if web_root() == CHECKOUT
               else "reinstall vqart from a checkout where `make setup` has run (npm ci in web/)")
        raise VqartError(f"{name} is missing ({path}): {fix}")
    return path
