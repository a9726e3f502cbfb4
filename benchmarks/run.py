"""Run every benchmarks/bench_*.py and write results.json plus a markdown table (results.md).

Each benchmark module exposes `TITLE` and `run(quick: bool) -> list[dict]`, a row per measure with the keys
`measure`, `value`, `unit`, `target` and `ok`. `--quick` is a smoke run; the README shows a full run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # benchmarks/common.py
# Training first: the later benchmarks reuse its 10-minute run instead of training their own.
ORDER = ("capture", "train", "train_levels", "generate", "server")

from vqart import atomic  # noqa: E402


def _load(path: Path):
    """Import a benchmark module from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rank(name: str) -> int:
    """Position of a benchmark in ORDER (unknown ones last)."""
    return ORDER.index(name) if name in ORDER else len(ORDER)


def _cpu_count() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _fmt(value) -> str:
    """A number as a table shows it: 3 significant figures, integers as they are."""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def to_markdown(results: dict) -> str:
    """The results as one markdown table per benchmark."""
    lines = [f"Measured {results['date']} on {results['machine']} (`make bench`).", ""]
    for bench in results["benchmarks"]:
        lines += [f"#### {bench['title']}", ""]
        if "error" in bench:
            lines += [f"Failed: `{bench['error']}`", ""]
            continue
        lines += ["| measure | value | target | |", "|---|---|---|---|"]
        for row in bench["rows"]:
            mark = {True: "pass", False: "**miss**", None: ""}[row.get("ok")]
            value = f"{_fmt(row['value'])} {row.get('unit', '')}".strip()
            lines.append(f"| {row['measure']} | {value} | {row.get('target', '')} | {mark} |")
        lines += ["", f"({bench['seconds']:.0f} s)", ""]
    return "\n".join(lines)


def main() -> int:
    """Run the selected benchmarks and write the results; exit 1 if one crashed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run, e.g. capture train (default: all)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run, not for the README")
    args = parser.parse_args()

    paths = sorted(HERE.glob("bench_*.py"), key=lambda p: (_rank(p.stem.removeprefix("bench_")), p.name))
    if args.names:
        paths = [p for p in paths if p.stem.removeprefix("bench_") in args.names]
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.system()}, {_cpu_count()} CPU cores, no GPU",
        "quick": args.quick,
        "benchmarks": [],
    }
    failed = False
    for path in paths:
        module = _load(path)
        print(f"== {module.TITLE}", flush=True)
        start = time.perf_counter()
        entry = {"name": path.stem.removeprefix("bench_"), "title": module.TITLE}
        try:
            entry["rows"] = module.run(quick=args.quick)
        except Exception as err:  # a crashed benchmark is reported and the others still run
            traceback.print_exc()
            entry["error"] = f"{type(err).__name__}: {err}"
            failed = True
        entry["seconds"] = time.perf_counter() - start
        results["benchmarks"].append(entry)
        for row in entry.get("rows", []):
            print(f"   {row['measure']}: {_fmt(row['value'])} {row.get('unit', '')}  {row.get('target', '')}")

    suffix = "quick" if args.quick else "results"
    atomic.write_json(HERE / f"{suffix}.json", results)
    atomic.write_text(HERE / f"{suffix}.md", to_markdown(results))
    print(f"wrote {HERE / (suffix + '.json')} and {HERE / (suffix + '.md')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
