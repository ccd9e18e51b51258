#!/usr/bin/env python3
"""Sweep submission speed: `make sweep` of a 1,000-point sweep, end to end
(create 1,000 experiments, write the index, one sbatch, record every task).

    python3 bench/sweep_bench.py [--points 1000] [--repeats 3] [--write docs/benchmarks.md]

Uses the real sbatch of the SLURM test cluster when it is up (the array is
cancelled at once), else says so and uses a stub that prints a job id. Each run
scaffolds a fresh project, so no point is skipped as already submitted.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import publish  # noqa: E402

from expflow import build_context, scaffold  # noqa: E402


def cluster_up():
    return shutil.which("sbatch") and subprocess.run(
        ["bash", str(REPO / "tests" / "cluster" / "check.sh")], capture_output=True).returncode == 0


def one_run(root, points, real):
    project = scaffold(build_context("sweepbench", None, {"backend": "slurm", "partition": "cs"}), root)
    seeds = ", ".join(str(i) for i in range(points))
    (project / "configs" / "big.yaml").write_text(
        f"set:\n  training.seconds_per_epoch: 30\nzip:\n  training.seed: [{seeds}]\n")
    env = dict(os.environ)
    calls = project / "calls.log"
    stub_dir = project / "stub-bin"
    stub_dir.mkdir()
    real_sbatch = shutil.which("sbatch") if real else ""
    body = f'exec "{real_sbatch}" "$@"' if real else "echo 4242"
    (stub_dir / "sbatch").write_text(f'#!/bin/bash\necho "sbatch $*" >> "{calls}"\n{body}\n')
    (stub_dir / "sbatch").chmod(0o755)
    env["PATH"] = "{}:{}".format(stub_dir, env["PATH"])
    start = time.perf_counter()
    out = subprocess.run(["make", "-s", "sweep", "SWEEP=configs/big.yaml", "MAX_PARALLEL=1", "FORCE=1"],
                         cwd=project, env=env, check=True, capture_output=True, text=True).stdout
    elapsed = time.perf_counter() - start
    if real:
        array = out.split(" as array ")[1].split()[0]
        subprocess.run(["scancel", array], check=False)
    recorded = len(list(project.glob("experiments/*/jobs/*.job.json")))
    assert recorded == points, f"{recorded} of {points} points recorded"
    return elapsed, len(calls.read_text().splitlines())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", help="append the results to this Markdown file")
    args = parser.parse_args()
    real = bool(cluster_up())
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(Path(tmp) / str(i), args.points, real) for i in range(args.repeats)]
    median = statistics.median(elapsed for elapsed, _ in runs)
    sbatch_calls = {calls for _, calls in runs}
    text = "\n".join([
        "## A {}-point sweep ({})".format(args.points, time.strftime("%Y-%m-%d")),
        "",
        "`python3 bench/sweep_bench.py --points {} --repeats {}`, {}: `make sweep` end to end "
        "(1,000 experiments created, one index file, sbatch, every task recorded).".format(
            args.points, args.repeats, "against the real test cluster" if real else "with a stub sbatch (no cluster)"),
        "",
        f"| what | median of {args.repeats} | each run |",
        "| --- | --- | --- |",
        "| `make sweep` of {} points | {:.2f} s | {} |".format(
            args.points, median, ", ".join(f"{e:.2f} s" for e, _ in runs)),
        "| sbatch calls per sweep | {} | |".format(", ".join(str(c) for c in sorted(sbatch_calls))),
        "",
    ])
    publish(text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
