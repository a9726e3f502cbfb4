"""Build hook: an installed vqart carries the browser files it serves and captures with (see vqart/assets.py)."""

import json
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

WEB = Path(__file__).resolve().parent / "web"
PAGES = ["package.json", "index.html", "train.html", "vqart.js", "train.js", "examples"]


class BuildPyWithWeb(build_py):
    """Copy web/'s pages and the npm libraries package.json lists into the package as vqart/_web."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install uses web/ itself
        target = Path(self.build_lib) / "vqart" / "_web"
        shutil.rmtree(target, ignore_errors=True)
        for name in PAGES:
            source = WEB / name
            if source.is_dir():
                shutil.copytree(source, target / name)
            elif source.is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
        for relative in json.loads((WEB / "package.json").read_text())["vqart"]["libraries"].values():
            source = WEB / "node_modules" / relative
            if source.is_file():  # missing when npm ci has not run: vqart then says what to do at run time
                (target / "node_modules" / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / "node_modules" / relative)


setup(cmdclass={"build_py": BuildPyWithWeb})
