#!/usr/bin/env python3
"""Start-up time of the expflow command: `expflow --version` and `expflow --help`
against `python -c pass`, all in one run, interleaved so that the machine's
noise falls on each alike.

    python3 bench/startup_bench.py [--repeats 21] [--write docs/benchmarks.md]

The target: each within 30 ms of `python -c pass` (the command imports neither
cookiecutter nor the runtime until a subcommand needs them).
"""

import argparse
import datetime
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import publish  # noqa: E402

COMMANDS = {
    "`python -c pass`": [sys.executable, "-c", "pass"],
    "`expflow --version`": [sys.executable, "-m", "expflow", "--version"],
    "`expflow --help`": [sys.executable, "-m", "expflow", "--help"],
}


def timed(argv):
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure(repeats):
    times = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():
        timed(argv)  # warm the file cache
    for _ in range(repeats):
        for name, argv in COMMANDS.items():
            times[name].append(timed(argv))
    return {name: statistics.median(values) for name, values in times.items()}


def report(medians, repeats):
    base = medians["`python -c pass`"]
    lines = [
        f"## expflow start-up ({datetime.date.today().isoformat()})", "",
        f"`python3 bench/startup_bench.py --repeats {repeats}`: medians of {repeats} runs, interleaved, one session "
        "(`python -m expflow`, so the console script's own start-up is left out of both sides).", "",
        "| command | median | over `python -c pass` |", "| --- | --- | --- |",
    ]
    for name, value in medians.items():
        lines.append(f"| {name} | {value * 1000:.1f} ms | {(value - base) * 1000:+.1f} ms |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--write", help="append the result to this Markdown file")
    args = parser.parse_args()
    publish(report(measure(args.repeats), args.repeats), args.write)


if __name__ == "__main__":
    main()
