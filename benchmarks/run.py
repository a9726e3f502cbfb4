"""Run benchmarks/bench_*.py; each writes benchmarks/results/<name>.json stamped with the commit, date, machine
and how fast that machine ran (the load, a fixed CPU reference before and after); benchmarks/results.md is
then assembled from every result file there, each table under its own stamp: a partial run (`run.py train`)
replaces only its own tables, and never mixes silently with old ones. Each benchmark runs in its own process.

Each benchmark module exposes `TITLE` and `run(quick: bool) -> list[dict]`, a row per measure with the keys
`measure`, `value`, `unit`, `target` and `ok`. `--quick` is a smoke run, written under results/quick/ instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # benchmarks/common.py
# Training first: the later benchmarks reuse its 10-minute run instead of training their own.
ORDER = ("capture", "train", "generate", "motion", "server", "live")

from vqart import atomic  # noqa: E402
from vqart.device import cpu_has_bf16  # noqa: E402


def _load(path: Path):
    """Import a benchmark module from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rank(name: str) -> int:
    """Position of a benchmark in ORDER (unknown ones last)."""
    return ORDER.index(name) if name in ORDER else len(ORDER)


def _stamp() -> dict:
    """Where and on what a result was measured: commit (with -dirty for uncommitted changes), date, machine."""
    git = lambda *args: subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        # the results this run has already written do not make the code dirty
        "commit": commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                                            ":!results", ":!results.md") else ""),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        # a CPU without bf16 trains in fp32 at half the speed, which the fp32 reference does not show
        "machine": f"{platform.machine()} {platform.system()}, {cores} CPU cores "
        f"({'with' if cpu_has_bf16() else 'no'} bf16), {gpu}",
    }


def _plain(row: dict) -> dict:
    """A result row with numpy scalars (np.float64, np.bool_) turned into plain Python values for JSON."""
    return {key: value.item() if hasattr(value, "item") else value for key, value in row.items()}


def _fmt(value) -> str:
    """A number as a table shows it: 3 significant figures, integers as they are."""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _conditions_note(bench: dict) -> str:
    """The conditions a table was measured under, as its stamp shows them. The load counts its own work (a model
    benchmark's 2 threads make 2); more than that means something else in the machine competed for the CPU. The
    CPU reference shows what the load cannot: a virtual machine's host may run it slower at one hour than another."""
    note = f", peak 1-minute load average {bench['load']:.1f}" if "load" in bench else ""
    if "reference" in bench:
        low, high = sorted(bench["reference"])
        note += f", CPU reference {low:.0f}-{high:.0f} GFLOP/s (before and after)"
    return note


def cpu_reference(seconds: float = 2.0, size: int = 512) -> float:
    """GFLOP/s of a fixed float32 matmul on 2 threads: the same work every time, so it shows how fast the machine
    ran while a table was measured (speed figures of two runs compare only beside it)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    a = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        done += 1
    elapsed = time.perf_counter() - start
    torch.set_num_threads(threads)
    return 2 * size**3 * done / elapsed / 1e9


class LoadWatch(threading.Thread):
    """The highest 1-minute load average seen while a benchmark runs, polled every few seconds."""

    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.peak, self.done = every, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.peak = max(self.peak, os.getloadavg()[0])


def to_markdown(results: list[dict]) -> str:
    """One markdown table per benchmark result, each under its stamp."""
    lines = ["Assembled by `benchmarks/run.py` from benchmarks/results/*.json; each table says when and on what "
             "commit it was measured.", ""]
    for bench in results:
        lines += [f"#### {bench['title']}", "",
                  f"*{bench['date']}, commit {bench['commit']}, {bench['machine']}, {bench['seconds']:.0f} s{_conditions_note(bench)}*",
                  ""]
        if "error" in bench:
            lines += [f"Failed: `{bench['error']}`", ""]
            continue
        lines += ["| measure | value | target | |", "|---|---|---|---|"]
        for row in bench["rows"]:
            mark = {True: "pass", False: "**miss**", None: ""}[row.get("ok")]
            value = f"{_fmt(row['value'])} {row.get('unit', '')}".strip()
            lines.append(f"| {row['measure']} | {value} | {row.get('target', '')} | {mark} |")
        lines.append("")
    return "\n".join(lines)


def measure(path: Path, folder: Path, quick: bool) -> bool:
    """Run one benchmark in this process and write its result file, stamped; False if it crashed."""
    module = _load(path)
    name = path.stem.removeprefix("bench_")
    print(f"== {module.TITLE}", flush=True)
    before = cpu_reference()
    start, watch = time.perf_counter(), LoadWatch()
    watch.start()
    entry = {"name": name, "title": module.TITLE, **_stamp()}
    try:
        entry["rows"] = [_plain(row) for row in module.run(quick=quick)]
    except Exception as err:  # a crashed benchmark is reported and the others still run
        traceback.print_exc()
        entry["error"] = f"{type(err).__name__}: {err}"
    entry["seconds"] = time.perf_counter() - start
    watch.done.set()
    entry["load"] = max(watch.peak, os.getloadavg()[0])
    entry["reference"] = [before, cpu_reference()]
    atomic.write_json(folder / f"{name}.json", entry)
    for row in entry.get("rows", []):
        print(f"   {row['measure']}: {_fmt(row['value'])} {row.get('unit', '')}  {row.get('target', '')}", flush=True)
    return "error" not in entry


def isolated(path: Path, folder: Path, quick: bool) -> bool:
    """Run one benchmark in a fresh Python process, as a user runs each command: no table reads a process that the
    benchmarks before it may have slowed. A process that dies without writing its result gets a failed table, never
    leaves an older table standing in for it."""
    name = path.stem.removeprefix("bench_")
    result = folder / f"{name}.json"
    written = lambda: result.stat().st_mtime_ns if result.exists() else None
    before, start = written(), time.perf_counter()
    command = [sys.executable, __file__, "--only", str(path)] + (["--quick"] if quick else [])
    code = subprocess.run(command, cwd=HERE.parent).returncode
    if code != 0 and written() == before:
        atomic.write_json(result, {"name": name, "title": name, **_stamp(), "seconds": time.perf_counter() - start,
                                   "error": f"its process exited with code {code} before writing a result"})
    return code == 0


def main() -> int:
    """Run the selected benchmarks, each in its own process, then reassemble results.md; exit 1 if one crashed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run, e.g. capture train (default: all)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run, not for the README")
    parser.add_argument("--only", type=Path, help=argparse.SUPPRESS)  # the child process: run this one file
    args = parser.parse_args()
    folder = HERE / "results" / ("quick" if args.quick else "")
    if args.only:
        return 0 if measure(args.only, folder, args.quick) else 1

    paths = sorted(HERE.glob("bench_*.py"), key=lambda p: (_rank(p.stem.removeprefix("bench_")), p.name))
    if args.names:
        paths = [p for p in paths if p.stem.removeprefix("bench_") in args.names]
    failed = [path.name for path in paths if not isolated(path, folder, args.quick)]
    results = sorted((json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda r: _rank(r["name"]))
    atomic.write_text(folder / "results.md" if args.quick else HERE / "results.md", to_markdown(results))
    print(f"wrote {folder} and {'its results.md' if args.quick else HERE / 'results.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
