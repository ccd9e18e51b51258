"""Long jobs (docs/long-jobs.md): before the time limit the program is asked to
save, the job requeues itself and resumes from its checkpoints, at most
MAX_RESTARTS times; then it ends TIMEOUT. On the local backend (a timer of the
job's shell) and on the real test cluster as alice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import test_slurm_cluster
from conftest import make, metadata, status_rows, wait_for
from test_local_backend import LOCAL
from test_slurm_cluster import USER, alice_make, expflow_as_alice

alice_site = test_slurm_cluster.alice_site  # the fixtures the cluster project is made with
alice_dir = test_slurm_cluster.alice_dir


def epochs_of(project: Path, exp: str) -> list[int]:
    lines = (project / "experiments" / exp / "train_metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def run_states(project: Path, exp: str) -> list[str]:
    """Each run's own record, in restart order."""
    runs = sorted((project / "experiments" / exp / "runs").glob("train-*.json"),
                  key=lambda p: (len(p.name), p.name))  # train-J.json, then .r1, .r2, ...
    return [json.loads(p.read_text())["state"] for p in runs]


def train_locally_until_it_ends(project: Path, exp: str, epochs: int, max_restarts: int) -> dict[str, str]:
    """Train EXP for `epochs` one-second epochs with TIME=4 s and a grace of 2 s;
    its status row once it ended."""
    make(project, "new", f"EXP={exp}", f"SET=training.seconds_per_epoch=1 training.epochs={epochs}",
         "TIME=00:00:04", "TIME_LIMIT_GRACE=2", f"MAX_RESTARTS={max_restarts}", env=LOCAL)
    make(project, "train", f"EXP={exp}", env=LOCAL)
    return wait_for(lambda: (r := status_rows(project, env=LOCAL)[(exp, "train")])["STATE"].startswith(
        ("COMPLETED", "FAILED", "TIMEOUT")) and r, timeout=60, what=f"{exp} to end")


def test_local_job_saves_requeues_and_completes_with_continuous_metrics(bake):
    project = bake()
    row = train_locally_until_it_ends(project, "long", epochs=8, max_restarts=5)
    assert row["STATE"].startswith("COMPLETED (restart ") and int(row["STATE"].split()[2].rstrip(")")) >= 2
    assert epochs_of(project, "long") == list(range(8))  # no epoch repeated or skipped
    states = run_states(project, "long")
    assert states[-1] == "COMPLETED" and set(states[:-1]) == {"REQUEUED"} and len(states) >= 3
    log = next((project / "experiments/long/logs").glob("train-*.out")).read_text()
    assert log.count("===== expflow: train of long") == len(states)
    assert "saved at epoch" in log and "resuming at epoch" in log


def test_local_job_out_of_restarts_ends_timeout_with_a_warning(bake):
    project = bake()
    row = train_locally_until_it_ends(project, "cap", epochs=30, max_restarts=1)
    assert row["STATE"] == "TIMEOUT (restart 1)"
    assert "no restart left (MAX_RESTARTS=1)" in row["REASON"]
    assert run_states(project, "cap") == ["REQUEUED", "TIMEOUT"]


def test_max_restarts_zero_sends_no_signal_and_asks_no_requeue(bake):
    project = bake(backend="slurm", partition="cs")
    out = make(project, "new", "EXP=x", env=LOCAL).stdout + make(
        project, "train", "EXP=x", "DRY_RUN=1", "MAX_RESTARTS=0", env={"BACKEND": "slurm"}).stdout
    assert "--requeue" not in out and "--signal" not in out and "EXPFLOW_MAX_RESTARTS=0" in out
    dry = make(project, "train", "EXP=x", "DRY_RUN=1", "TIME_LIMIT_GRACE=120", env={"BACKEND": "slurm"}).stdout
    assert "--requeue --signal=B:USR1@120" in dry


@pytest.fixture
def project(alice_site, alice_dir) -> Path:
    expflow_as_alice(alice_site, alice_dir, "scaffold", alice_dir.name, "--no-input", "--set", "partition=cs",
                     "--set", "gpus=0", "--set", "gpu_type=")
    return alice_dir / alice_dir.name


def release_requeue_hold(job_id: str) -> None:
    """SLURM holds a requeued job about two minutes (Reason BeginTime) before it
    may start again; the test, as the administrator, lets it start at once."""
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], capture_output=True)


@pytest.mark.slurm
def test_cluster_job_outlives_its_time_limit_and_one_out_of_restarts_ends_timeout(project):
    """TIME=00:02:00 and about 4 minutes of work: the job saves and requeues itself
    at least twice and completes with every epoch once; beside it, one with
    MAX_RESTARTS=1 ends TIMEOUT after one restart, with the WARNING."""
    alice_make(project, "new", "EXP=long", "SET=training.seconds_per_epoch=10 training.epochs=24",
               "TIME=00:02:00", "TIME_LIMIT_GRACE=30", "MAX_RESTARTS=6")
    alice_make(project, "new", "EXP=cap", "SET=training.seconds_per_epoch=10 training.epochs=60",
               "TIME=00:02:00", "TIME_LIMIT_GRACE=30", "MAX_RESTARTS=1")
    alice_make(project, "train", "EXP=long")
    alice_make(project, "train", "EXP=cap")
    ids = {exp: metadata(project, exp)["jobs"][0]["job_id"] for exp in ("long", "cap")}
    try:
        def ended():
            rows = status_rows(project, user=USER)
            for exp, job_id in ids.items():
                if rows[(exp, "train")]["STATE"].startswith("PENDING (restart"):
                    release_requeue_hold(job_id)
            states = {exp: rows[(exp, "train")]["STATE"] for exp in ids}
            return all(s.startswith(("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED")) for s in states.values()) and rows
        rows = wait_for(ended, timeout=900, interval=5, what="both jobs to end")
        long_state = rows[("long", "train")]["STATE"]
        assert long_state.startswith("COMPLETED (restart "), long_state
        restarts = int(long_state.split()[2].rstrip(",)"))
        assert restarts >= 2
        assert epochs_of(project, "long") == list(range(24))  # continuous: none repeated or skipped
        assert run_states(project, "long") == ["REQUEUED"] * restarts + ["COMPLETED"]
        log = (project / f"experiments/long/logs/train-{ids['long']}.out").read_text()
        assert log.count("===== expflow: train of long") == len(run_states(project, "long"))
        cap = rows[("cap", "train")]
        assert cap["STATE"].startswith("TIMEOUT (restart 1") and "no restart left (MAX_RESTARTS=1)" in cap["REASON"]
    finally:
        subprocess.run(["scancel", *ids.values()], capture_output=True)
