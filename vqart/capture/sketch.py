"""A sketch file on disk: its name, source, hash and which p5.js major version it wants."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vqart.assets import library
from vqart.errors import VqartError

_P5_1_MARKER = re.compile(r"^\s*//\s*p5\s*1\b")
# preload() was removed in p5 2.x, so a sketch that defines it (global or instance mode) needs 1.x.
_PRELOAD = re.compile(r"\bfunction\s+preload\s*\(|\.preload\s*=|\bpreload\s*=\s*(function|\()")
# Code that indexes the pixel array counts device pixels, so it keeps the pixel density it expects.
_PIXELS = re.compile(r"\b(loadPixels|updatePixels)\b|\bpixels\s*\[")


@dataclass(frozen=True)
class Sketch:
    """One sketch: `name` is the file stem and names its folder under data/."""

    path: Path
    source: str

    @property
    def name(self) -> str:
        """The folder name its frames go to."""
        return self.path.stem

    @property
    def sha256(self) -> str:
        """Hash of the source, so a changed sketch is captured again."""
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    @property
    def counts_pixels(self) -> bool:
        """True when the sketch reads or writes pixels[] (it is then rendered at its own pixel density)."""
        return bool(_PIXELS.search(self.source))

    def p5_choice(self) -> tuple[int, str]:
        """The p5.js major version the source asks for, and why: 1 for `// p5 1` on the first line or a
        preload() (removed in 2.x), else 2."""
        if _P5_1_MARKER.match(self.source.split("\n", 1)[0]):
            return 1, "'// p5 1' on its first line"
        if _PRELOAD.search(self.source):
            return 1, "it defines preload(), which p5 2.x removed"
        return 2, "the default"

    def p5_major(self) -> int:
        """The major version of p5_choice()."""
        return self.p5_choice()[0]


def find_sketches(paths: Iterable[str | Path]) -> list[Sketch]:
    """Sketch files named directly or found (*.js, sorted) in the folders given."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(path.glob("*.js")))
        elif path.is_file():
            files.append(path)
        else:
            raise VqartError(f"{path}: no such sketch file or folder")
    if not files:
        raise VqartError(f"no .js sketches found in {', '.join(map(str, paths))}")
    sketches = [Sketch(f, f.read_text(encoding="utf-8", errors="replace")) for f in files]
    names = [s.name for s in sketches]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise VqartError(f"two sketches share the name {', '.join(clashes)}: rename one (frames go to data/<name>/)")
    return sketches


def p5_library(major: int) -> Path:
    """The local p5.min.js for a major version; VqartError saying how to install it if it is missing."""
    return library({1: "p5-v1.min.js", 2: "p5.min.js"}[major])
