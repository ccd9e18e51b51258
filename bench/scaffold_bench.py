#!/usr/bin/env python3
"""`expflow scaffold --no-input` against plain `cookiecutter --no-input` of the
same template, on the machine's SLURM cluster (tests/cluster/start.sh): the
time of each (median of N, interleaved) and the SLURM commands scaffold runs.

    python3 bench/scaffold_bench.py [--repeats 5] [--write docs/benchmarks.md]

expflow's time includes everything a user waits for: Python starting, detecting
the cluster (sinfo, scontrol, sacctmgr), rendering and the project's records.
The SLURM calls are counted through wrappers on PATH that log and pass on.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import publish  # noqa: E402

SLURM_COMMANDS = ("sinfo", "squeue", "sacct", "sacctmgr", "scontrol", "sbatch")


def recording_path(folder, log):
    """A PATH whose SLURM commands log their name to log, then run the real one."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name in SLURM_COMMANDS:
        real = subprocess.run(["which", name], capture_output=True, text=True).stdout.strip()
        if real:
            wrapper = bin_dir / name
            wrapper.write_text(f'#!/bin/sh\necho {name} >>"{log}"\nexec {real} "$@"\n')
            wrapper.chmod(0o755)
    return "{}:{}".format(bin_dir, os.environ["PATH"])


def timed(argv, cwd, env):
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", help="append the results to this Markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="expflow-scaffold-bench-") as tmp:
        tmp = Path(tmp)
        log = tmp / "calls.log"
        env = dict(os.environ, PATH=recording_path(tmp, log), PYTHONPATH=str(REPO))
        template = str(REPO / "cookiecutter-template")
        times = {"expflow": [], "cookiecutter": []}
        for round_ in range(args.repeats):
            log.write_text("")
            times["expflow"].append(timed([sys.executable, "-m", "expflow", "scaffold", f"e{round_}",
                                           "--no-input"], tmp, env))
            calls = log.read_text().split()
            times["cookiecutter"].append(timed([sys.executable, "-m", "cookiecutter", "--no-input", template,
                                                f"project_name=c{round_}"], tmp, env))
    expflow, plain = (statistics.median(times[k]) for k in ("expflow", "cookiecutter"))
    counts = ", ".join(f"{calls.count(name)} {name}" for name in SLURM_COMMANDS if name in calls)
    publish("\n".join([
        f"## expflow scaffold against plain cookiecutter ({date.today().isoformat()})",
        "",
        f"`python3 bench/scaffold_bench.py --repeats {args.repeats}`: medians, the two interleaved, on the "
        "project's test cluster.",
        "",
        "| what | median | runs |",
        "| --- | --- | --- |",
        "| `expflow scaffold NAME --no-input` (detects the cluster) | {:.2f} s | {} |".format(
            expflow, ", ".join(f"{t:.2f}" for t in times["expflow"])),
        "| `cookiecutter --no-input` of the same template | {:.2f} s | {} |".format(
            plain, ", ".join(f"{t:.2f}" for t in times["cookiecutter"])),
        f"| ratio | {expflow / plain:.2f}x | goal: <= 1.3x |",
        "",
        "SLURM commands one scaffold runs: {} ({} in all; the access check, one `sbatch --test-only` "
        "per account and partition, now runs only with `--check-access` or when first needed).".format(
            counts or "none", len(calls)),
        "",
    ]), args.write)


if __name__ == "__main__":
    main()
