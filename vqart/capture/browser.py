"""Finding a Chromium, installing one when we may, and launching it headless for capture."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Browser, Playwright, sync_playwright

from vqart.errors import VqartError

# Quiet, offline and deterministic: no GPU (software raster is reproducible), no background traffic.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SYSTEM_BROWSERS = [
    "/usr/bin/chromium",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
]


def find_browser(playwright: Playwright | None = None) -> Path | None:
    """The first Chromium found: $VQART_BROWSER, Playwright's own, then a system one; None if none."""
    if env := os.environ.get("VQART_BROWSER"):
        path = Path(env).expanduser()
        if not path.is_file():
            raise VqartError(f"VQART_BROWSER={env} is not a file: point it at a Chromium or Chrome executable")
        return path
    if playwright is None:
        with sync_playwright() as pw:
            return find_browser(pw)
    own = Path(playwright.chromium.executable_path)
    if own.is_file():
        return own
    for name in SYSTEM_BROWSERS:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return Path(found)
    return None


def install_command() -> str:
    """The exact command that installs a Chromium on this machine."""
    if _is_debian():
        return "apt-get install -y chromium" if _is_root() else "sudo apt-get install chromium"
    return f"{sys.executable} -m playwright install chromium"


def launch(playwright: Playwright) -> Browser:
    """Start a headless Chromium with a fresh temporary profile; VqartError if there is none."""
    path = find_browser(playwright)
    if path is None:
        raise VqartError(f"no Chromium found: install one with `{install_command()}` or set VQART_BROWSER")
    # Playwright's launch() gives every run its own temporary user-data dir and removes it afterwards.
    return playwright.chromium.launch(executable_path=str(path), headless=True, args=LAUNCH_ARGS)


def install() -> int:
    """Reuse a Chromium that exists, install Debian's when root on Debian, else print what to run."""
    try:
        path = find_browser()
    except VqartError as err:
        print(err, file=sys.stderr)
        return 1
    if path is not None:
        print(f"browser: {path}")
        return 0
    if _is_debian() and _is_root():
        print("no Chromium found: installing Debian's chromium", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}  # CI has no terminal to answer a prompt
        install = ["apt-get", "install", "-y", "chromium"]
        if subprocess.run(install, check=False, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], check=False, env=env)
            subprocess.run(install, check=False, env=env)
        path = find_browser()
        if path is not None:
            print(f"browser: {path}")
            return 0
    print(f"no Chromium found. Install one with:\n    {install_command()}", file=sys.stderr)
    return 1


def _is_debian() -> bool:
    return platform.system() == "Linux" and Path("/etc/debian_version").exists()


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--install"]:
        sys.exit("usage: python -m vqart.capture.browser --install")
    sys.exit(install())
