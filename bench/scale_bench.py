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
--repeats rounds, interleaved (interleaved()), in wall and CPU time; peak RSS
is the child's ru_maxrss; the garbage collector's share is measured in-process
with gc.callbacks. MLflow (its SQLite store) runs in the Python given, e.g. a
throwaway venv: pip install mlflow-skinny sqlalchemy alembic numpy pandas.
"""

import argparse
import datetime
import json
import os
import resource
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
    files.write_experiment_json(path, files.run_record_path(path, "train", job_id), record)
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

# python3 -c FLOOR in a project whose index is up to date: the least a warm make results does, with no
# step per experiment: start, import the runtime, list the ids, read the index, stat each experiment's
# directory and results file (the later half in a forked child, as index.Preload), copy the results
# files and caches by the kernel to new files, which are then removed.
FLOOR = r'''
import os, sys
sys.path.insert(0, os.getcwd())
from expflow_runtime import run, results, harvest, index, rowcache  # noqa: F401 (what make results imports)
ids = sorted(name for name in os.listdir("experiments") if not name.startswith("."))
with open(".expflow/harvest.index", "rb") as handle:
    handle.read()
fd = os.open("experiments", os.O_RDONLY)
def stamp(part):
    for exp_id in part:
        os.lstat(exp_id, dir_fd=fd)
        os.stat(exp_id + "/train_results.json", dir_fd=fd)
pid = os.fork()
if pid == 0:
    stamp(ids[len(ids) // 2:])
    os._exit(0)
stamp(ids[:len(ids) // 2])
os.waitpid(pid, 0)
for source in ("results/results.csv", "results/results.md", "results/results.json", ".expflow/results.rows",
               ".expflow/harvest.index"):
    copy = source + ".floor"
    with open(source, "rb") as old, open(copy, "wb") as new:
        size, at = os.fstat(old.fileno()).st_size, 0
        while at < size:
            at += os.sendfile(new.fileno(), old.fileno(), at, size - at)
    os.unlink(copy)
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
''' + MLFLOW_SEARCH_MEDIAN

# make runs the bench's own Python (the Makefile's PYTHON ?= python3): on PATH, python3 may be a
# pyenv shim, a shell script that adds its own start-up to every command
ENV = dict(os.environ, COLUMNS="200", LINES="40", PYTHON=sys.executable)


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


def run_once(argv, cwd, before=None):
    """(wall seconds, CPU seconds of its processes) of one run of argv."""
    if before:
        before()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (now.ru_utime - used.ru_utime) + (now.ru_stime - used.ru_stime)


def interleaved(repeats, commands, cwd):
    """{name: (median wall, median CPU)}: one unmeasured round (the page cache),
    then `repeats` rounds, each running every command once, so that the shared
    machine's noise falls on each alike. commands: {name: (argv, before, after)}."""
    for argv, before, after in commands.values():
        run_once(argv, cwd, before)
        if after:
            after()
    samples = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (argv, before, after) in commands.items():
            samples[name].append(run_once(argv, cwd, before))
            if after:
                after()
    return {name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
            for name, runs in samples.items()}


def drop_caches(project):
    """A full harvest next: the index and the row caches gone."""
    def drop():
        for name in ("harvest.index", "results.rows", "status.rows"):
            (project / ".expflow" / name).unlink(missing_ok=True)
    return drop


def peak_rss_mib(argv, cwd, before=None):
    if before:
        before()
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=cwd, env=ENV, check=True, capture_output=True,
                         text=True).stdout
    return int(out.split()[-1]) / 1024


def gc_share(project):
    drop_caches(project)()
    out = subprocess.run([sys.executable, "-c", GC_SHARE], cwd=project, env=ENV, check=True, capture_output=True,
                         text=True).stdout
    total, collecting = json.loads(out)
    return collecting / total


RESULTS, STATUS = ["make", "-s", "results"], ["make", "-s", "status"]


def cold_figures(project, repeats, readers=True):
    """A full harvest (no index) side by side with the minimal readers and a cold make status."""
    base = str(project / "experiments")
    commands = {"cold": (RESULTS, drop_caches(project), None),
                "status_cold": (STATUS, drop_caches(project), None)}
    if readers:
        commands["every"] = ([sys.executable, "-c", READER, base, "--all"], None, None)
        commands["opened"] = ([sys.executable, "-c", READER, base], None, None)
    figures = interleaved(repeats, commands, project)
    figures["rss_cold"] = peak_rss_mib(RESULTS, project, before=drop_caches(project))
    figures["gc"] = gc_share(project)
    return figures


def warm_figures(project, repeats, changes=True):
    """With the index up to date: make results with nothing changed, with 1%
    changed (rewritten as a job that ends rewrites them, then settled 2 s and
    indexed, unmeasured, before the next round), and make status."""
    subprocess.run(RESULTS, cwd=project, env=ENV, check=True, stdout=subprocess.DEVNULL)
    seeds = iter(range(1000))

    def change():
        subprocess.run([sys.executable, "-c", CHANGE, "0.01", str(next(seeds))], cwd=project, check=True)

    def settle():
        time.sleep(2.1)
        subprocess.run(RESULTS, cwd=project, env=ENV, check=True, stdout=subprocess.DEVNULL)

    commands = {"warm": (RESULTS, None, None), "status": (STATUS, None, None),
                "floor": ([sys.executable, "-I", "-c", FLOOR], None, None)}
    if changes:
        commands["changed"] = (RESULTS, change, settle)
    figures = interleaved(repeats, commands, project)
    figures["rss_warm"] = peak_rss_mib(RESULTS, project)
    figures["rss_status"] = peak_rss_mib(STATUS, project)
    return figures


def hundred_lines(project, repeats):
    """The JSONL grown to 100 lines: cold make results against the reader of every file."""
    subprocess.run([sys.executable, "-c", MORE_LINES, str(project / "experiments"), "100"], check=True)
    age(project / "experiments")
    base = str(project / "experiments")
    return interleaved(repeats, {"cold": (RESULTS, drop_caches(project), None),
                                 "every": ([sys.executable, "-c", READER, base, "--all"], None, None)}, project)


def mlflow_search(python, count, repeats, lines):
    if not python:
        return None, "no --mlflow-python given"
    with tempfile.TemporaryDirectory() as store:
        result = subprocess.run([python, "-c", MLFLOW_SEARCH, store, str(count), str(repeats), str(lines)],
                                capture_output=True, text=True)
    if result.returncode:
        return None, (result.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(result.stdout.strip().splitlines()[-1]), ""


def report(args, small, large, lines100, mlflow, built):
    def pair(a, b, name_a, name_b=None):
        """ "wall ratio (a s / b s)" and "CPU ratio" cells."""
        (wall_a, cpu_a), (wall_b, cpu_b) = a[name_a], b[name_b or name_a]
        return (f"{wall_a / wall_b:.3g}x ({wall_a:.3g} s / {wall_b:.3g} s)",
                f"{cpu_a / cpu_b:.3g}x ({cpu_a:.3g} s / {cpu_b:.3g} s)")

    def row(figure, cells, goal):
        return f"| {figure} | {cells[0]} | {cells[1]} | {goal} |"

    n, m = args.small, args.large
    lines = [
        f"## make results and make status at {n} and {m} experiments ({datetime.date.today().isoformat()})", "",
        f"`python3 bench/scale_bench.py --small {n} --large {m} --repeats {args.repeats} --mlflow-python ...`: "
        f"medians of {args.repeats} rounds, one session, each round running every command of a group once "
        "(interleaved, so that the noise of this shared 2-core machine falls on each alike), wall time and the "
        "CPU time of the command's processes (user + system, steadier when the machine is shared). Finished "
        "experiments written by the runtime's own writers (a 20-line metrics JSONL each), dated an hour back; "
        f"{n} written in {built[0]:.0f} s, {m} in {built[1]:.0f} s. Cold: no `.expflow/harvest.index` nor row "
        "caches (a full harvest, which writes them); warm: the index up to date. `make` ran "
        f"`PYTHON={sys.executable}`.", "",
        "| figure | wall | CPU | goal (issue 14) |", "| --- | --- | --- | --- |",
        row(f"cold `make results` at {n} / a minimal stdlib reader of every file an experiment has (20-line JSONL)",
            pair(small, small, "cold", "every"), "<= 1.2x"),
        row("same / a reader of only the files `make results` opens", pair(small, small, "cold", "opened"),
            "<= 1.5x"),
        row(f"`make results` with 1% of {n} changed / the cold run", pair(small, small, "changed", "cold"),
            "<= 0.10x"),
    ]
    if mlflow[0]:
        search = mlflow[0]["median"]
        wall = small["changed"][0]
        lines.append(f"| same / MLflow {mlflow[0]['version']} SQLite `search_runs` of the same {n} runs | "
                     f"{wall / search:.3g}x ({wall:.3g} s / {search:.3g} s) | | <= 0.05x |")
    else:
        lines.append(f"| same / MLflow SQLite `search_runs` | not measured: {mlflow[1]} | | <= 0.05x |")
    lines += [
        row(f"warm `make status` at {n}, all finished / the cold `make results`", pair(small, small, "status", "cold"),
            "<= 0.2x"),
        f"| peak RSS of cold `make results` at {n} / at {m} | {small['rss_cold']:.0f} MiB / "
        f"{large['rss_cold']:.0f} MiB | | <= 64 MiB / <= 96 MiB |",
        row(f"cold `make results` at {m} / at {n} (rounds apart: CPU is the steadier figure)",
            pair(large, small, "cold"), "<= 5.0x"),
        f"| garbage collector's share of a cold `make results` at {n} / at {m} | {small['gc'] * 100:.0f}% / "
        f"{large['gc'] * 100:.0f}% | | (was 21% at 50k) |",
        "", "Besides (medians, wall / CPU):", "",
        f"| also measured | at {n} | at {m} |", "| --- | --- | --- |",
    ]
    for name, what in (("warm", "warm `make results`, nothing changed"),
                       ("floor", "the least a warm `make results` does, no step per experiment (`FLOOR`: start, "
                                 "imports, listing, two stats per experiment on two cores, the results files and "
                                 "caches copied by the kernel; `python3 -c`, without make)"),
                       ("status", "warm `make status`"),
                       ("status_cold", "cold `make status` (reads the state files only)"),
                       ("cold", "cold `make results`")):
        lines.append(f"| {what} | {small[name][0]:.3g} s / {small[name][1]:.3g} s | "
                     f"{large[name][0]:.3g} s / {large[name][1]:.3g} s |")
    lines += [
        f"| peak RSS of warm `make results` | {small['rss_warm']:.0f} MiB | {large['rss_warm']:.0f} MiB |",
        f"| peak RSS of warm `make status` | {small['rss_status']:.0f} MiB | {large['rss_status']:.0f} MiB |",
        "",
        f"With a 100-line JSONL per experiment (as in the 10000-experiment section above), cold `make results` / "
        f"the reader of every file: {pair(lines100, lines100, 'cold', 'every')[0]} wall, "
        f"{pair(lines100, lines100, 'cold', 'every')[1]} CPU (`make results` reads no JSONL when a results JSON "
        "settles the metrics).", "",
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
        small = cold_figures(project, args.repeats)
        small.update(warm_figures(project, args.repeats))
        lines100 = hundred_lines(project, args.repeats)
        shutil.rmtree(project)
        start = time.perf_counter()
        project = build(Path(tmp) / "large", args.large, 20)
        built.append(time.perf_counter() - start)
        large = cold_figures(project, args.repeats, readers=False)
        large.update(warm_figures(project, args.repeats, changes=False))
    mlflow = mlflow_search(args.mlflow_python, args.small, args.repeats, 20)
    publish(report(args, small, large, lines100, mlflow, built), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
