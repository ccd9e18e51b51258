#!/usr/bin/env python3
"""Harvest speed: `make results` over N experiments against a minimal stdlib
reader of the same files, and MLflow's search_runs over the same runs when
mlflow is importable (pass --mlflow-python to use another interpreter).

    python3 bench/harvest_bench.py [--experiments 10000] [--repeats 5] [--write docs/benchmarks.md]

Each experiment has what a finished one has: config.yaml/.json, metadata.json,
its job's run record, train_results.json and a 100-line train_metrics.jsonl.
Also counts the scheduler calls of `make status` and `make results` when half
of the experiments have SLURM jobs the files do not settle (a recording stub
stands in for sacct: the count is the point, not the answer).
"""

import argparse
import json
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

from benchlib import MLFLOW_SEARCH_MEDIAN, publish  # noqa: E402

from expflow import build_context, scaffold  # noqa: E402

MINIMAL_READER = r'''
import json, os, sys
base = sys.argv[1]
rows = 0
for name in sorted(os.listdir(base)):
    path = os.path.join(base, name)
    for part in ("metadata.json", "config.json", "train_results.json"):
        with open(os.path.join(path, part)) as handle:
            json.load(handle)
    for record in os.listdir(os.path.join(path, "runs")):
        with open(os.path.join(path, "runs", record)) as handle:
            json.load(handle)
    if "--with-jsonl" in sys.argv:
        with open(os.path.join(path, "train_metrics.jsonl")) as handle:
            for line in handle:
                json.loads(line)
    rows += 1
print(rows)
'''


def write_json(path, data):
    with open(path, "w") as handle:
        json.dump(data, handle)


def make_experiment(base, index, slurm):
    exp_id = f"e{index:05d}"
    path = base / exp_id
    (path / "runs").mkdir(parents=True)
    (path / "logs").mkdir()
    lr = round(0.001 * (1 + index % 100), 4)
    config = {"model": {"name": "mlp", "depth": 2 + index % 4}, "optimizer": {"lr": lr}, "seed": index}
    (path / "config.yaml").write_text("model:\n  name: mlp\n  depth: {}\noptimizer:\n  lr: {}\nseed: {}\n".format(
        config["model"]["depth"], lr, index))
    write_json(path / "config.json", config)
    job_id = str(100000 + index) if slurm else f"local-{index:08x}"
    job = {"stage": "train", "job_id": job_id, "backend": "slurm" if slurm else "local", "attempt": 1,
           "submitted": "2026-11-28T10:00:00+00:00", "log": f"logs/train-{job_id}.out",
           "resources": {"partition": "l40s_public", "gpu_type": "l40s", "gpus": "1", "account": "acct"},
           "git": {"repository": True, "commit": "0123456789abcdef", "branch": "main", "dirty": False}}
    write_json(path / "metadata.json", {"id": exp_id, "created": "2026-11-28T10:00:00+00:00", "jobs": [job]})
    record = {"stage": "train", "job_id": job_id, "state": "RUNNING" if slurm else "COMPLETED",
              "started": "2026-11-28T10:00:01+00:00", "node": "gl001", "attempt": 1}
    if not slurm:
        record.update(ended="2026-11-28T10:05:01+00:00", exit_code=0)
    write_json(path / "runs" / f"train-{job_id}.json", record)
    with open(path / "train_metrics.jsonl", "w") as handle:
        for step in range(100):
            handle.write(json.dumps({"step": step, "loss": 1.0 / (step + 1), "val_acc": step / 100.0}) + "\n")
    write_json(path / "train_results.json", {"loss": 0.01, "val_acc": 0.99, "test_acc": 0.98 - lr})


def build_project(root, count, slurm_every=0):
    project = scaffold(build_context("bench", None, {}), root)
    experiments = project / "experiments"
    experiments.mkdir()
    for index in range(count):
        make_experiment(experiments, index, slurm=bool(slurm_every) and index % slurm_every == 0)
    return project


def timed(argv, cwd, env=None):
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_of(repeats, argv, cwd, env=None):
    timed(argv, cwd, env)  # warm the page cache
    return statistics.median(timed(argv, cwd, env) for _ in range(repeats))


def scheduler_calls(project, target):
    """How many scheduler commands `make target` ran (stubs that record and answer nothing)."""
    stub_dir = project / "stub-bin"
    log = project / "calls.log"
    stub_dir.mkdir(exist_ok=True)
    for name in ("sacct", "squeue", "sinfo", "scontrol", "sbatch"):
        stub = stub_dir / name
        stub.write_text(f'#!/bin/bash\necho "{name} $*" >> "{log}"\n')
        stub.chmod(0o755)
    log.write_text("")
    env = dict(os.environ, PATH="{}:{}".format(stub_dir, os.environ["PATH"]), COLUMNS="200")
    subprocess.run(["make", "-s", target], cwd=project, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return [line.split()[0] for line in log.read_text().splitlines()]


MLFLOW_BENCH = r'''
import os, sys, time, statistics, json, mlflow, logging
logging.getLogger("mlflow").setLevel(logging.ERROR)
store, count, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mlflow.set_tracking_uri("file://" + store)
client = mlflow.tracking.MlflowClient()
experiment = client.create_experiment("bench")
from mlflow.entities import Metric, Param
for index in range(count):
    run = client.create_run(experiment)
    lr = round(0.001 * (1 + index % 100), 4)
    params = [Param("model.name", "mlp"), Param("model.depth", str(2 + index % 4)), Param("optimizer.lr", str(lr)),
              Param("seed", str(index))]
    metrics = [Metric(k, v, 0, step) for step in range(100) for k, v in (("loss", 1.0 / (step + 1)),
                                                                           ("val_acc", step / 100.0))]
    metrics += [Metric("test_acc", 0.98 - lr, 0, 0)]
    client.log_batch(run.info.run_id, metrics=metrics[:900], params=params)
    client.log_batch(run.info.run_id, metrics=metrics[900:])
    client.set_terminated(run.info.run_id)
''' + MLFLOW_SEARCH_MEDIAN


def mlflow_search(python, count, repeats):
    if not shutil.which(python):
        return None, f"no Python at {python}"
    with tempfile.TemporaryDirectory() as store:
        env = dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true")  # MLflow 3 keeps it, in maintenance mode
        result = subprocess.run([python, "-c", MLFLOW_BENCH, store, str(count), str(repeats)],
                                capture_output=True, text=True, env=env)
    if result.returncode:
        return None, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"
    return json.loads(result.stdout.strip().splitlines()[-1]), ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mlflow-python", default=sys.executable)
    parser.add_argument("--write", help="append the results to this Markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        project = build_project(Path(tmp), args.experiments)
        built = time.perf_counter() - start
        env = dict(os.environ, COLUMNS="200")
        harvest = median_of(args.repeats, ["make", "-s", "results"], project, env)
        reader = [sys.executable, "-c", MINIMAL_READER, str(project / "experiments")]
        minimal = median_of(args.repeats, reader + ["--with-jsonl"], project)
        opened = median_of(args.repeats, reader, project)
        rows = (project / "results" / "results.csv").read_text().count("\n") - 1
        mixed = build_project(Path(tmp) / "mixed", args.experiments, slurm_every=2)
        calls = {target: scheduler_calls(mixed, target) for target in ("status", "results")}
    mlflow, why = mlflow_search(args.mlflow_python, args.experiments, args.repeats)
    lines = [
        "## Harvest of {} experiments ({})".format(args.experiments, time.strftime("%Y-%m-%d")),
        "",
        f"`python3 bench/harvest_bench.py --experiments {args.experiments} --repeats {args.repeats}`: "
        f"medians of {args.repeats} runs, one session, on this 2-core machine (experiments written in {built:.1f} s).",
        "",
        "| what | median | ratio to the minimal reader |",
        "| --- | --- | --- |",
        f"| `make results` (CSV + Markdown + JSON, {rows} rows) | {harvest:.2f} s | {harvest / minimal:.2f}x |",
        f"| minimal stdlib reader of the same files, the 100-line JSONL included | {minimal:.2f} s | 1.00x |",
        f"| minimal stdlib reader of only the files `make results` opens (no JSONL) | {opened:.2f} s | "
        f"{opened / minimal:.2f}x |",
    ]
    if mlflow:
        lines.append(f"| MLflow {mlflow['version']} `search_runs` over the same runs (file store) | "
                     f"{mlflow['median']:.2f} s | {mlflow['median'] / minimal:.2f}x |")
    else:
        lines.append(f"| MLflow `search_runs` | not measured: {why} | |")
    lines += [
        "",
        f"`make results` takes {harvest / opened:.2f}x the time of just reading the files it opens (it skips "
        "the JSONL when a results JSON settles the metrics), and writes three files besides.",
        "",
        f"Scheduler calls with {args.experiments // 2} of the {args.experiments} experiments waiting on SLURM: "
        f"`make status` {calls['status'] or 'none'}, `make results` {calls['results'] or 'none'}.",
        "",
    ]
    text = "\n".join(lines)
    publish(text, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
