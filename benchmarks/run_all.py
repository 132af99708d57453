"""Run every benchmark in this folder, one after another, each in its own process.

Why separate processes: each benchmark measures time and peak memory against a baseline taken
in the same run; sharing a process would let one benchmark's allocations and threads skew the
next one's figures. Arguments after ``--`` are not passed on: each script's defaults are the
sizes the issues set as targets. Run: ``python benchmarks/run_all.py [--only entropy,writer]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("entropy", "entropy_masked", "writer", "scale", "analysis", "dashboard", "overhead", "dh_probe", "alerts")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names (default: all)")
    names = [n for n in parser.parse_args().only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {unknown}; expected some of {list(BENCHMARKS)}")
    failed = []
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"== {name}: {script} is missing, skipped", flush=True)
            failed.append(name)
            continue
        print(f"== {name} ({script.name})", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)])
        print(f"== {name}: exit {code} after {time.perf_counter() - started:.0f} s\n", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed or missing: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
