#!/usr/bin/env python3
"""The report at scale: `make report` over a 1,000-point sweep of 100 epochs
each, the file's size, and how soon it is usable in headless Chromium.

    python3 bench/report_bench.py [--points 1000] [--epochs 100] [--repeats 5] [--write docs/benchmarks.md]

The project is built by the runtime's own writers: `make sweep` creates the
points and records their array tasks (a stub sbatch answers with a job id), then
each task writes what a job writes, through expflow_runtime.jobrecord (its run
record, start and finish), the example train.py's epochs as its metrics JSONL,
its results and its log. One point in 40 fails part-way with exit code 1.

"Usable" is the page's own mark (report.js sets data-ready once every view is
drawn and a frame painted), in milliseconds from the start of navigation.
"""

import argparse
import importlib
import importlib.util
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

NAMES = ["mlp", "cnn", "resnet", "vit", "rnn"]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")


def sweep_file(points, epochs):
    """A grid of `points` points: lr x depth x width x name (points a multiple of 100)."""
    lrs = [round(0.002 * 1.5 ** k, 6) for k in range(points // 100)]
    return ("set:\n  training.seconds_per_epoch: 0\n  training.epochs: {}\ngrid:\n  optimizer.lr: {}\n"
            "  model.depth: [1, 2, 3, 4, 5]\n  model.width: [32, 64, 128, 256]\n  model.name: [{}]\n").format(
        epochs, json.dumps(lrs), ", ".join(NAMES))


def stub_bin(project):
    """sbatch answers with a job id; sacct, squeue and scontrol answer nothing."""
    stubs = project / "stub-bin"
    stubs.mkdir()
    for name, body in (("sbatch", "echo 4242"), ("sacct", "true"), ("squeue", "true"), ("scontrol", "true")):
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    return dict(os.environ, PATH="{}:{}".format(stubs, os.environ["PATH"]), COLUMNS="200")


def run_jobs(project, epochs):
    """What each array task writes, through the runtime's own writers."""
    sys.path.insert(0, str(project))
    files, jobrecord, ledger = (importlib.import_module("expflow_runtime." + name)
                                for name in ("files", "jobrecord", "ledger"))
    spec = importlib.util.spec_from_file_location("bench_train", project / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    failed = 0
    for index, exp_id in enumerate(files.list_experiment_ids(str(project))):
        exp_dir = files.experiment_dir(str(project), exp_id)
        job = files.latest_job(ledger.metadata(exp_dir), "train")
        task = job["job_id"].split("_")[1]
        env = {"EXPFLOW_EXP_DIR": exp_dir, "EXPFLOW_STAGE": "train", "EXPFLOW_JOB_ID": job["job_id"],
               "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": task,
               "SLURMD_NODENAME": f"gpu{index % 8:02d}", "SLURM_JOB_PARTITION": "gpu"}
        jobrecord.start(env)
        with open(os.path.join(exp_dir, "config.json")) as handle:
            config = json.load(handle)
        fails = index % 40 == 39
        last = epochs // 2 if fails else epochs
        lines, log = [], ["===== expflow: train of {}, job {}".format(exp_id, job["job_id"])]
        for epoch in range(last):
            metrics = train.simulated_epoch(config, epoch)
            lines.append(json.dumps(metrics))
            log.append("epoch {epoch}: loss={loss} val_acc={val_acc}".format(**metrics))
        with open(os.path.join(exp_dir, "train_metrics.jsonl"), "w") as handle:
            handle.write("\n".join(lines) + "\n")
        if fails:
            failed += 1
            log.append("RuntimeError: CUDA error: an illegal memory access was encountered")
        else:
            files.write_json_atomic(os.path.join(exp_dir, "train_results.json"), {
                "loss": metrics["loss"], "val_acc": metrics["val_acc"], "epochs": epochs})
        log_path = os.path.join(exp_dir, job["log"])
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "w") as handle:
            handle.write("\n".join(log) + "\n")
        jobrecord.finish(env, 1 if fails else 0, "")
    return failed


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def usable_ms(driver, url):
    """Milliseconds from navigation start to the page's data-ready mark (a fresh load)."""
    driver.get("about:blank")
    driver.get(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready = driver.execute_script("return document.documentElement.getAttribute('data-ready')")
        if ready:
            return float(ready)
        time.sleep(0.02)
    raise RuntimeError("the report never became ready")


REDRAW = """
var input = document.getElementById('filter'), start = performance.now();
input.value = arguments[0];
input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
return performance.now() - start;
"""


def redraw_ms(driver, repeats):
    """Milliseconds to apply a filter typed in the box and redraw every view (median)."""
    times = []
    for _ in range(repeats):
        times.append(driver.execute_script(REDRAW, "state=COMPLETED model.name!=cnn"))
        times.append(driver.execute_script(REDRAW, ""))
    return statistics.median(times)


def timed(argv, cwd, env):
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", help="copy the report here")
    parser.add_argument("--write", help="append the results to this Markdown file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        project = scaffold(build_context("reportbench", None, {"backend": "slurm"}), Path(tmp))
        (project / "configs" / "bench.yaml").write_text(sweep_file(args.points, args.epochs))
        env = stub_bin(project)
        subprocess.run(["make", "-s", "sweep", "SWEEP=configs/bench.yaml"], cwd=project, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        failed = run_jobs(project, args.epochs)
        built = time.perf_counter() - start
        writes = [timed(["make", "-s", "report"], project, env) for _ in range(3)]
        page = project / "results" / "report.html"
        size = page.stat().st_size
        data = json.loads(page.read_text().split('id="report-data">')[1].split("</script>")[0])
        if args.keep:
            shutil.copy(page, args.keep)
        driver = browser()
        try:
            loads = [usable_ms(driver, page.as_uri()) for _ in range(args.repeats)]
            drawn = len(driver.find_elements("css selector", "#charts path.run"))
            table_rows = len(driver.find_elements("css selector", "#results tbody tr"))
            pc_lines = len(driver.find_elements("css selector", "#pc path.pc"))
            redraw = redraw_ms(driver, args.repeats)
        finally:
            driver.quit()
    usable = statistics.median(loads)
    each = ", ".join(f"{x:.0f}" for x in loads)
    command = f"python3 bench/report_bench.py --points {args.points} --epochs {args.epochs} --repeats {args.repeats}"
    lines = [
        f"## The report of a {args.points}-point sweep ({time.strftime('%Y-%m-%d')})",
        "",
        f"`{command}`: {args.points} experiments of {args.epochs} epochs each (written by `make sweep` and the "
        f"runtime's job-side writers in {built:.0f} s; {failed} of them failed part-way), headless Chromium "
        f"{chromium_version()} on this 2-core machine.",
        "",
        "| what | result | target |",
        "| --- | --- | --- |",
        f"| `results/report.html` | {size / 1e6:.2f} MB ({size // 1024} KB) | under 5 MB |",
        f"| load to usable (every view drawn, a frame painted), median of {args.repeats} | {usable:.0f} ms "
        f"({each}) | under 2 s |",
        f"| `make report` (harvest, read {args.points} JSONL, write), median of 3 | "
        f"{statistics.median(writes):.2f} s | |",
        f"| a filter typed in the box: every view redrawn, median of {2 * args.repeats} | {redraw:.0f} ms | |",
        "",
        f"On the page: {table_rows} table rows, {drawn} curves on the charts by default (the table's first "
        f"{data['lines_shown']} runs on each of {len(data['charts'])} charts), {pc_lines} lines in the parallel "
        f"coordinates; {embedded_points(data)} curve points embedded.",
        "",
    ]
    publish("\n".join(lines), args.write)
    return 0


def embedded_points(data):
    return sum(len(values) for stages in data["curves"].values() for stage in stages.values()
               for values in stage["metrics"].values())


def chromium_version():
    out = subprocess.run([shutil.which("chromium") or "chromium", "--version"], capture_output=True, text=True).stdout
    return out.split()[1] if len(out.split()) > 1 else "(version unknown)"


if __name__ == "__main__":
    sys.exit(main())
