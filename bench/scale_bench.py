#!/usr/bin/env python3
"""make results and make status at 10,000 and 50,000 finished experiments: every
figure of issue 14's table, side by side in one run.

    python3 bench/scale_bench.py [--small 10000] [--large 50000] [--repeats 5]
        [--mlflow-python /tmp/venv/bin/python] [--write docs/benchmarks.md]

The experiments are made by the generated project's own writers
(submit.write_experiment, the job ledger's intent and job entries, the job's
run record, its results JSON, a 20-line metrics JSONL and a log), so the
layout on disk is the real one, then dated an hour back (finished
experiments are older than the index's 2 seconds). Each figure is a median of
--repeats runs (a first, unmeasured run warms the page cache); peak RSS is the
child's ru_maxrss; the garbage collector's share is measured in-process with
gc.callbacks.
"""

import argparse
import datetime
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

from benchlib import publish  # noqa: E402

from expflow import build_context, scaffold  # noqa: E402

# Runs in the project: python3 -c GENERATE COUNT LINES. Finished experiments,
# written by the runtime itself.
GENERATE = r'''
import json, os, sys
sys.path.insert(0, os.getcwd())
from expflow_runtime import files, submit
count, lines = int(sys.argv[1]), int(sys.argv[2])
settings = files.read_settings(files.ROOT)
for index in range(count):
    exp_id = "e{:06d}".format(index)
    lr = round(0.001 * (1 + index % 100), 4)
    config = {"model": {"name": "mlp", "depth": 2 + index % 4}, "optimizer": {"lr": lr}, "seed": index}
    text = "model:\n  name: mlp\n  depth: {}\noptimizer:\n  lr: {}\nseed: {}\n".format(2 + index % 4, lr, index)
    path = submit.write_experiment(exp_id, config, text, settings, {}, {"description": "bench"})
    token = "{:08x}".format(index)
    job_id = "local-" + token
    intent = {"token": token, "stage": "train", "backend": "local", "attempt": 1, "job_id": job_id,
              "resources": {"partition": "", "gpus": "0", "gpu_type": "", "time": "01:00:00"},
              "job_name": exp_id + "-train." + token, "log_template": files.log_name("train", "{job_id}"),
              "git": {"repository": True, "commit": "0123456789abcdef0123", "branch": "main", "dirty": False}}
    submit.submit_recorded([(path, intent)], lambda: {"pid": ""})
    record = {"stage": "train", "job_id": job_id, "state": "COMPLETED", "exit_code": 0, "restart": 0, "attempt": 1,
              "started": "2026-11-28T10:00:01+00:00", "ended": "2026-11-28T10:05:01+00:00", "node": "gl001",
              "host": "gl001", "pid": 4242, "partition": "", "account": "", "python": "3.11.7",
              "cuda_visible_devices": "", "allocated_gpus": {}}
    files.write_json_atomic(files.run_record_path(path, "train", job_id), record)
    with open(os.path.join(path, "train_metrics.jsonl"), "w") as handle:
        for step in range(lines):
            handle.write(json.dumps({"epoch": step, "step": step * 100, "loss": 1.0 / (step + 1),
                                     "val_acc": step / (lines + 1.0)}) + "\n")
    with open(os.path.join(path, files.log_name("train", job_id)), "w") as handle:
        handle.write("epoch {} done\n".format(lines))
    files.write_json_atomic(os.path.join(path, "train_results.json"),
                            {"loss": 1.0 / lines, "val_acc": 0.9 + lr, "test_acc": 0.98 - lr})
'''

# python3 -c MORE_LINES EXPERIMENTS LINES: the JSONL of each experiment grown to LINES lines.
MORE_LINES = r'''
import json, os, sys
base, lines = sys.argv[1], int(sys.argv[2])
for name in os.listdir(base):
    path = os.path.join(base, name, "train_metrics.jsonl")
    with open(path) as handle:
        have = sum(1 for _ in handle)
    with open(path, "a") as handle:
        for step in range(have, lines):
            handle.write(json.dumps({"epoch": step, "step": step * 100, "loss": 1.0 / (step + 1),
                                     "val_acc": step / (lines + 1.0)}) + "\n")
'''

# python3 -c CHANGE FRACTION SEED in the project: results rewritten, as a job that ends writes them.
CHANGE = r'''
import os, random, sys
sys.path.insert(0, os.getcwd())
from expflow_runtime import files
fraction, seed = float(sys.argv[1]), int(sys.argv[2])
ids = files.list_experiment_ids(files.ROOT)
rng = random.Random(seed)
for exp_id in rng.sample(ids, max(1, int(len(ids) * fraction))):
    files.write_json_atomic(os.path.join(files.experiment_dir(files.ROOT, exp_id), "train_results.json"),
                            {"loss": rng.random(), "val_acc": rng.random(), "test_acc": rng.random()})
'''

# python3 -c READER EXPERIMENTS [--all]: a minimal stdlib reader. --all: every file an experiment
# has (each JSON parsed, each JSONL line parsed, config.yaml and the log read); else only the files
# make results opens (metadata, config.json, results, the journal, the run records).
READER = r'''
import json, os, sys
base, every = sys.argv[1], "--all" in sys.argv
rows = 0
for name in sorted(os.listdir(base)):
    path = os.path.join(base, name)
    for part in ("metadata.json", "config.json", "train_results.json"):
        with open(os.path.join(path, part), "rb") as handle:
            json.loads(handle.read())
    for sub in ("runs", "jobs"):
        for entry in sorted(os.listdir(os.path.join(path, sub))):
            with open(os.path.join(path, sub, entry), "rb") as handle:
                json.loads(handle.read())
    if every:
        with open(os.path.join(path, "train_metrics.jsonl")) as handle:
            for line in handle:
                json.loads(line)
        for text in ["config.yaml"] + ["logs/" + log for log in os.listdir(os.path.join(path, "logs"))]:
            with open(os.path.join(path, text)) as handle:
                handle.read()
    rows += 1
print(rows)
'''

# python3 -c PEAK ARGV...: run ARGV, print the peak RSS (KiB) of its processes.
PEAK = r'''
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
'''

# python3 -c GC_SHARE in the project: make results in-process; seconds in all, seconds collecting.
GC_SHARE = r'''
import contextlib, gc, io, json, os, sys, time
sys.path.insert(0, os.getcwd())
from expflow_runtime import results
spent, started = [0.0], [0.0]
def timer(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - started[0]
gc.callbacks.append(timer)
begin = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    results.cmd_results({})
print(json.dumps([time.perf_counter() - begin, spent[0]]))
'''

MLFLOW_SEARCH = r'''
import json, logging, os, statistics, sys, time
import mlflow
from mlflow.entities import Metric, Param
logging.getLogger("mlflow").setLevel(logging.ERROR)
store, count, repeats, lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
mlflow.set_tracking_uri("sqlite:///" + os.path.join(store, "mlflow.db"))
client = mlflow.tracking.MlflowClient()
experiment = client.create_experiment("bench")
for index in range(count):
    run = client.create_run(experiment)
    lr = round(0.001 * (1 + index % 100), 4)
    params = [Param("model.name", "mlp"), Param("model.depth", str(2 + index % 4)), Param("optimizer.lr", str(lr)),
              Param("seed", str(index))]
    metrics = [Metric(k, v, 0, step) for step in range(lines) for k, v in (("loss", 1.0 / (step + 1)),
                                                                             ("val_acc", step / (lines + 1.0)))]
    metrics += [Metric("test_acc", 0.98 - lr, 0, 0)]
    client.log_batch(run.info.run_id, metrics=metrics, params=params)
    client.set_terminated(run.info.run_id)
def search():
    start = time.perf_counter()
    runs = mlflow.search_runs(experiment_ids=[experiment], max_results=count * 2)
    assert len(runs) == count, len(runs)
    return time.perf_counter() - start
search()
print(json.dumps({"version": mlflow.__version__, "median": statistics.median(search() for _ in range(repeats))}))
'''

ENV = dict(os.environ, COLUMNS="200", LINES="40")


def build(root, count, lines):
    project = scaffold(build_context("bench", None, {}), root)
    subprocess.run([sys.executable, "-c", GENERATE, str(count), str(lines)], cwd=project, check=True)
    age(project / "experiments")
    return project


def age(experiments, seconds=3600):
    """Everything dated back: finished experiments are not minutes old."""
    past = time.time() - seconds
    for directory, dirs, names in os.walk(experiments):
        for name in dirs + names:
            os.utime(os.path.join(directory, name), (past, past), follow_symlinks=False)


def timed(argv, cwd, before=None):
    if before:
        before()
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_of(repeats, argv, cwd, before=None, after=None):
    timed(argv, cwd, before)  # warms the page cache
    times = []
    for _ in range(repeats):
        times.append(timed(argv, cwd, before))
        if after:
            after()
    return statistics.median(times)


def drop_index(project):
    return lambda: (project / ".expflow" / "harvest.index").unlink(missing_ok=True)


def peak_rss_mib(argv, cwd, before=None):
    if before:
        before()
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=cwd, env=ENV, check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[-1]) / 1024


def gc_share(project):
    drop_index(project)()
    out = subprocess.run([sys.executable, "-c", GC_SHARE], cwd=project, env=ENV, check=True, capture_output=True,
                         text=True).stdout
    total, collecting = json.loads(out)
    return collecting / total


def measure_scale(project, repeats):
    """Cold (no index: a full harvest) and warm make results, make status, peak RSS, GC share."""
    results, status = ["make", "-s", "results"], ["make", "-s", "status"]
    figures = {
        "cold": median_of(repeats, results, project, before=drop_index(project)),
        "rss_cold": peak_rss_mib(results, project, before=drop_index(project)),
        "gc": gc_share(project),
    }
    subprocess.run(results, cwd=project, env=ENV, check=True, stdout=subprocess.DEVNULL)
    figures["warm"] = median_of(repeats, results, project)
    figures["rss_warm"] = peak_rss_mib(results, project)
    figures["status"] = median_of(repeats, status, project)
    figures["status_cold"] = median_of(repeats, status, project, before=drop_index(project))
    figures["rss_status"] = peak_rss_mib(status, project)
    return figures


def changed_one_percent(project, repeats):
    """make results after 1% of the experiments wrote new results (each round
    2 s later than the last, so the previous round's changes have settled)."""
    subprocess.run(["make", "-s", "results"], cwd=project, env=ENV, check=True, stdout=subprocess.DEVNULL)
    seeds = iter(range(1000))
    change = lambda: subprocess.run([sys.executable, "-c", CHANGE, "0.01", str(next(seeds))],  # noqa: E731
                                    cwd=project, check=True)
    return median_of(repeats, ["make", "-s", "results"], project, before=change,
                     after=lambda: time.sleep(2.1))


def readers(project, repeats):
    base = str(project / "experiments")
    every = median_of(repeats, [sys.executable, "-c", READER, base, "--all"], project)
    opened = median_of(repeats, [sys.executable, "-c", READER, base], project)
    return every, opened


def mlflow_search(python, count, repeats, lines):
    if not python:
        return None, "no --mlflow-python given"
    with tempfile.TemporaryDirectory() as store:
        result = subprocess.run([python, "-c", MLFLOW_SEARCH, store, str(count), str(repeats), str(lines)],
                                capture_output=True, text=True)
    if result.returncode:
        return None, (result.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(result.stdout.strip().splitlines()[-1]), ""


def report(args, small, large, every, opened, every100, cold100, changed, mlflow, built):
    def ratio(a, b):
        return f"{a / b:.2f}x"

    lines = [
        f"## make results and make status at {args.small} and {args.large} experiments "
        f"({datetime.date.today().isoformat()})", "",
        f"`python3 bench/scale_bench.py --small {args.small} --large {args.large} --repeats {args.repeats}`: "
        f"medians of {args.repeats} runs, one session, on this 2-core shared machine; finished experiments "
        "written by the runtime's own writers (a 20-line metrics JSONL each), dated an hour back; "
        f"{args.small} written in {built[0]:.0f} s, {args.large} in {built[1]:.0f} s. Cold: no "
        "`.expflow/harvest.index` (a full harvest, which also writes it); warm: the index up to date.", "",
        "| figure | measured | goal (issue 14) |", "| --- | --- | --- |",
        f"| cold `make results` at {args.small} ({small['cold']:.2f} s) / a minimal stdlib reader of every file an "
        f"experiment has, 20-line JSONL ({every:.2f} s) | {ratio(small['cold'], every)} | <= 1.2x |",
        f"| same / a reader of only the files `make results` opens ({opened:.2f} s) | "
        f"{ratio(small['cold'], opened)} | <= 1.5x |",
        f"| `make results` with 1% of {args.small} changed ({changed:.2f} s) / the cold run | "
        f"{ratio(changed, small['cold'])} | <= 0.10x |",
    ]
    if mlflow[0]:
        mlflow = mlflow[0]
        lines.append(f"| same / MLflow {mlflow['version']} SQLite `search_runs` of the same {args.small} runs "
                     f"({mlflow['median']:.2f} s) | {ratio(changed, mlflow['median'])} | <= 0.05x |")
    else:
        lines.append(f"| same / MLflow SQLite `search_runs` | not measured: {mlflow[1]} | <= 0.05x |")
    lines += [
        f"| `make status` at {args.small}, all finished, warm ({small['status']:.2f} s; cold "
        f"{small['status_cold']:.2f} s) / the cold `make results` | {ratio(small['status'], small['cold'])} "
        "| <= 0.2x |",
        f"| peak RSS of cold `make results` at {args.small} / at {args.large} | {small['rss_cold']:.0f} MiB / "
        f"{large['rss_cold']:.0f} MiB | <= 64 MiB / <= 96 MiB |",
        f"| cold time at {args.large} ({large['cold']:.2f} s) / at {args.small} | "
        f"{ratio(large['cold'], small['cold'])} (garbage collector: {large['gc'] * 100:.0f}% at {args.large}, "
        f"{small['gc'] * 100:.0f}% at {args.small}) | <= 5.0x |",
        "",
        "Besides:", "",
        f"| also measured | at {args.small} | at {args.large} |", "| --- | --- | --- |",
        f"| warm `make results`, nothing changed | {small['warm']:.2f} s | {large['warm']:.2f} s |",
        f"| peak RSS of warm `make results` | {small['rss_warm']:.0f} MiB | {large['rss_warm']:.0f} MiB |",
        f"| warm `make status` | {small['status']:.2f} s | {large['status']:.2f} s |",
        f"| cold `make status` (state files only) | {small['status_cold']:.2f} s | {large['status_cold']:.2f} s |",
        f"| peak RSS of warm `make status` | {small['rss_status']:.0f} MiB | {large['rss_status']:.0f} MiB |",
        "",
        f"With a 100-line JSONL per experiment (the figure of the section above): the minimal reader of every "
        f"file takes {every100:.2f} s at {args.small}, cold `make results` {cold100:.2f} s "
        f"({ratio(cold100, every100)}; `make results` does not read the JSONL when a results JSON settles the "
        "metrics).", "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10000)
    parser.add_argument("--large", type=int, default=50000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mlflow-python", default="")
    parser.add_argument("--write", help="append the results to this Markdown file")
    args = parser.parse_args()
    if not shutil.which("make"):
        sys.exit("make is needed")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        project = build(Path(tmp) / "small", args.small, 20)
        built = [time.perf_counter() - start]
        every, opened = readers(project, args.repeats)
        small = measure_scale(project, args.repeats)
        changed = changed_one_percent(project, args.repeats)
        subprocess.run([sys.executable, "-c", MORE_LINES, str(project / "experiments"), "100"], check=True)
        age(project / "experiments")
        every100 = median_of(args.repeats, [sys.executable, "-c", READER, str(project / "experiments"), "--all"],
                             project)
        cold100 = median_of(args.repeats, ["make", "-s", "results"], project, before=drop_index(project))
        shutil.rmtree(project)
        start = time.perf_counter()
        project = build(Path(tmp) / "large", args.large, 20)
        built.append(time.perf_counter() - start)
        large = measure_scale(project, args.repeats)
    mlflow = mlflow_search(args.mlflow_python, args.small, args.repeats, 20)
    publish(report(args, small, large, every, opened, every100, cold100, changed, mlflow, built), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
