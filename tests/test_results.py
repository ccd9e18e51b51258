"""Results people would rather look at than read: harvest options, log
patterns, compare, best, the HTML report (in a real headless Chromium) and
PNG plots. Runs on the local backend; the cluster path is test_slurm_cluster.py."""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import make, run
from test_local_backend import LOCAL, error_line, wait_state

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> Path:
    """A project with three finished experiments of different learning rates."""
    from expflow import build_context, scaffold

    project = scaffold(build_context("results-demo", None, {}), tmp_path_factory.mktemp("res"))
    for exp, lr in (("lr01", 0.1), ("lr03", 0.3), ("lr05", 0.5)):
        make(project, "train", f"EXP={exp}", f"SET=optimizer.lr={lr} training.seconds_per_epoch=0.05",
             f"DESC=lr {lr}", env=LOCAL)
    for exp in ("lr01", "lr03", "lr05"):
        wait_state(project, exp, "train", {"COMPLETED"})
    return project


def read_csv(project):
    with open(project / "results" / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_results_files_filter_sort_columns(three_runs):
    make(three_runs, "results", "SORT=-val_acc")
    rows = read_csv(three_runs)
    assert [r["id"] for r in rows] == ["lr05", "lr03", "lr01"]
    assert [r["optimizer.lr"] for r in rows] == ["0.5", "0.3", "0.1"]
    natives = json.loads((three_runs / "results/results.json").read_text())
    assert natives[0]["optimizer.lr"] == 0.5 and natives[0]["state"] == "COMPLETED"
    assert list(natives[0])[:3] == ["id", "sweep", "state"]
    make(three_runs, "results", "FILTER=optimizer.lr<0.4 state=COMPLETED", "COLUMNS=id,val_acc", "SORT=id")
    assert read_csv(three_runs) == [{"id": "lr01", "val_acc": "0.81488"}, {"id": "lr03", "val_acc": "0.973926"}]
    bad = make(three_runs, "results", "FILTER=nope=1", check=False)
    assert error_line(bad) == "error: FILTER: no column 'nope'"


def test_results_prints_markdown_fitted_to_the_terminal(three_runs):
    out = make(three_runs, "results", env={"COLUMNS": "60"}).stdout
    lines = out.splitlines()
    assert lines[0] == "3 experiments: 3 COMPLETED"
    assert lines[1].startswith("| id | state | epochs | loss | val_acc |")
    assert all(len(line) <= 60 for line in lines[1:6])
    assert "more columns:" in out
    wide = make(three_runs, "results", env={"COLUMNS": "1000"}).stdout
    assert "more columns" not in wide and "optimizer.lr" in wide.splitlines()[1]


def test_best(three_runs):
    out = make(three_runs, "best", "N=2").stdout.splitlines()
    assert out[0] == "best 2 by val_acc (max):"
    assert out[2].split()[:3] == ["1", "lr05", "0.995451"] and out[3].split()[1] == "lr03"
    assert "optimizer.lr" in out[1]  # the parameter that differs among them
    lowest = make(three_runs, "best", "METRIC=loss", "MODE=min", "N=1").stdout.splitlines()
    assert lowest[2].split()[1] == "lr05"


def test_compare(three_runs):
    out = make(three_runs, "compare", "A=lr01", "B=lr05").stdout
    config, metrics, ran = out.split("== ")[1:]
    assert "optimizer.lr  0.1   0.5" in config and "model.depth" not in config
    assert "val_acc" in metrics and "0.81488" in metrics
    assert ran.strip().endswith("(no differences)")
    lonely = make(three_runs, "compare", "A=lr01", check=False)
    assert error_line(lonely).startswith("error: name two experiments or more")


def test_metric_patterns_read_printed_metrics(bake):
    project = bake()
    settings = project / "settings.env"
    settings.write_text(settings.read_text().replace(
        "METRIC_PATTERN_1=''", "METRIC_PATTERN_1='epoch (?P<last_epoch>[0-9]+): loss=(?P<printed_loss>[0-9.]+)'"))
    make(project, "train", "EXP=p", env=LOCAL)
    wait_state(project, "p", "train", {"COMPLETED"})
    make(project, "results")
    row = read_csv(project)[0]
    assert row["last_epoch"] == "4" and row["printed_loss"] == row["loss"] == "0.37024"
    settings.write_text(settings.read_text().replace("METRIC_PATTERN_1='epoch", "METRIC_PATTERN_1='(epoch"))
    bad = make(project, "results", check=False)
    assert error_line(bad).startswith("error: METRIC_PATTERN_1: not a regular expression")


def test_running_job_shows_its_latest_metrics(bake):
    project = bake()
    make(project, "train", "EXP=live", "SET=training.seconds_per_epoch=3", env=LOCAL)
    metrics = project / "experiments/live/train_metrics.jsonl"
    wait_state(project, "live", "train", {"RUNNING"})
    from conftest import wait_for
    wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1, what="a first epoch")
    with open(metrics, "a") as handle:
        handle.write('{"epoch": 1, "loss": 0.5')  # a line being written right now
    make(project, "results")
    row = read_csv(project)[0]
    assert row["state"] == "RUNNING" and row["epoch"] == "0" and row["loss"] != ""
    make(project, "cancel", "EXP=live")


def chromium_paths():
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    chromium, driver = chromium_paths()
    if not (chromium and driver):
        message = "Chromium missing: apt-get install chromium chromium-driver (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


def test_plot_with_and_without_matplotlib(three_runs):
    pytest.importorskip("matplotlib", reason="the test extra installs matplotlib")
    import sys
    out = make(three_runs, "plot", "METRIC=loss", f"PYTHON={sys.executable}").stdout
    assert out.strip() == "[OK] 3 curves -> results/plot-loss.png"
    assert (three_runs / "results/plot-loss.png").read_bytes()[:4] == b"\x89PNG"
    every = make(three_runs, "plot", "FILTER=optimizer.lr>0.2", f"PYTHON={sys.executable}").stdout.splitlines()
    assert every == ["[OK] 2 curves -> results/plot-val_acc.png", "[OK] 2 curves -> results/plot-loss.png"]
    unknown = make(three_runs, "plot", "METRIC=nope", f"PYTHON={sys.executable}", check=False)
    assert error_line(unknown) == "error: no experiment has written metric 'nope' to its metrics JSONL"
    bare = run(["make", "-s", "plot", "METRIC=loss", "PYTHON=/usr/bin/python3"], cwd=three_runs, check=False)
    assert bare.returncode != 0
    assert bare.stderr.splitlines()[0] == (
        "error: matplotlib is not importable here; make report draws the curves without it")


def test_floats_round_trip_and_config_keys_never_overwrite_status_columns(bake):
    from test_reliability_files import fake_run

    project = bake()
    exact = {"val_acc": 1.306123, "loss": 0.1 + 0.2, "tiny": 1e-300, "big": 123456789.123456789}
    exp = fake_run(project, "a", results=json.dumps(exact).encode())
    config = json.loads((exp / "config.json").read_text())
    config.update(state="mystate", gpus=7, partition="mine", node="n9")
    (exp / "config.json").write_text(json.dumps(config))
    make(project, "results")
    row = read_csv(project)[0]
    assert {key: float(row[key]) for key in exact} == exact  # repr: every digit kept
    assert row["val_acc"] == "1.306123" and row["loss"] == "0.30000000000000004"
    assert row["state"] == "COMPLETED" and row["config.state"] == "mystate"
    assert row["gpus"] == "" and row["config.gpus"] == "7" and row["config.partition"] == "mine"
    native = json.loads((project / "results/results.json").read_text())[0]
    assert native["state"] == "COMPLETED" and native["config.state"] == "mystate" and native["config.gpus"] == 7
    assert read_csv_filtered(project, "FILTER=config.state=mystate state=COMPLETED") == ["a"]


def read_csv_filtered(project, *variables):
    make(project, "results", *variables)
    return [row["id"] for row in read_csv(project)]


def test_limit_and_all_print_a_screen_the_files_keep_every_row(bake):
    from test_reliability_files import fake_run

    project = bake()
    for index in range(14):
        fake_run(project, f"e{index:02d}", results=json.dumps({"val_acc": index / 100}).encode())
    fake_run(project, "failed", state="FAILED")
    fake_run(project, "running", state="RUNNING", job_id="local-0002")
    make(project, "new", "EXP=fresh", env=LOCAL)
    out = make(project, "results", "LIMIT=3").stdout.splitlines()
    assert out[0] == "17 experiments: 14 COMPLETED, 1 FAILED, 1 NEW, 1 RUNNING"
    assert [line.split(" | ")[0] for line in out[3:6]] == ["| e13", "| e12", "| e11"]  # best val_acc first
    assert "(3 of 17 rows shown, the best by val_acc first; LIMIT=N or ALL=1 shows more)" in out
    assert len(read_csv(project)) == 17  # the files have every row
    every = make(project, "results", "ALL=1").stdout
    assert every.count("\n| ") == 1 + 17 and "rows shown" not in every  # the header and every row
    status = make(project, "status", "LIMIT=2", env={"COLUMNS": "200"}).stdout.splitlines()
    assert status[0] == "17 experiments: 14 COMPLETED, 1 FAILED, 1 NEW, 1 RUNNING"
    assert [line.split()[0] for line in status[2:4]] == ["running", "failed"]  # unfinished, then failed
    assert status[4].startswith("(2 of 17 rows shown, unfinished and failed first")
    assert len(make(project, "status", "ALL=1", env={"COLUMNS": "200"}).stdout.splitlines()) == 2 + 17
    bad = make(project, "status", "LIMIT=some", check=False)
    assert error_line(bad) == "error: LIMIT='some' is not a whole number (digits 0-9) of at least 0"


def test_status_reads_only_what_state_needs(bake):
    from test_reliability_files import fake_run

    project = bake()
    exp = fake_run(project, "a", results=b'{"val_acc": 0.5')  # half-written: a results problem
    (exp / "config.json").write_text("{")
    status = make(project, "status")
    assert status.stderr == "" and "COMPLETED" in status.stdout  # config and results are not read
    results = make(project, "results")
    assert "config.json" in results.stderr and "train_results.json" in results.stderr
