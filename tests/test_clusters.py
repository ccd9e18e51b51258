"""One project on two real clusters: torch (tests/cluster/start.sh) and greene,
a second controller beside it (tests/cluster/start-second.sh), reached through
SLURM_CONF. alice trains on torch, commits the project with its experiments,
clones it, adds greene's profile there and trains on greene; then one make
results and one report show both clusters' experiments, make status asks each
cluster only about its own jobs, and resume refuses another cluster's job."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import test_slurm_cluster
from conftest import metadata, run, status_rows, wait_for
from test_slurm_cluster import USER, alice_make, expflow_as_alice

pytestmark = pytest.mark.slurm
alice_site = test_slurm_cluster.alice_site
alice_dir = test_slurm_cluster.alice_dir

GREENE = {"SLURM_CONF": "/etc/slurm-greene/slurm.conf"}
GIT = ["git", "-c", "user.name=Alice", "-c", "user.email=alice@example.org"]


@pytest.fixture(scope="session")
def greene(slurm_cluster) -> None:
    """The second cluster; off CI a missing one skips, with CI=true it fails."""
    answer = subprocess.run(["scontrol", "ping"], env={**os.environ, **GREENE}, capture_output=True, text=True)
    if "is UP" not in answer.stdout:
        message = "the second test cluster is not running: sudo bash tests/cluster/start-second.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def cancel_greene_jobs_under(path: Path) -> None:
    """This test's own jobs on greene (by working directory), never others'."""
    queued = run(["squeue", "--user", USER, "--noheader", "--format=%i|%Z"], cwd=Path("/"), env=GREENE).stdout
    mine = [job_id for job_id, _, work_dir in (line.partition("|") for line in queued.splitlines())
            if work_dir.startswith(str(path) + "/")]
    if mine:
        run(["scancel", *mine], cwd=Path("/"), env=GREENE, check=False)


def wait_completed(project: Path, exp: str, env: dict[str, str]) -> dict[str, str]:
    def done():
        row = status_rows(project, user=USER, env=env).get((exp, "train"))
        return row if row and row["STATE"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None
    row = wait_for(done, timeout=120, interval=1, what=f"{exp} to end")
    assert row["STATE"] == "COMPLETED", row
    return row


def intent(project: Path, exp: str) -> dict:
    return json.loads(next((project / "experiments" / exp / "jobs").glob("*.intent.json")).read_text())


def test_one_project_trains_on_two_clusters_and_reports_both(alice_site, alice_dir, greene):
    name = alice_dir.name
    expflow_as_alice(alice_site, alice_dir, "scaffold", name, "--no-input", "--set", "partition=cs",
                     "--set", "gpus=0", "--set", "gpu_type=")
    torch = alice_dir / name
    ignore = torch / ".gitignore"  # experiments travel with the repository (docs/clusters.md)
    ignore.write_text(ignore.read_text().replace("experiments/\n", ""))
    out = alice_make(torch, "train", "EXP=001", "SET=training.epochs=2").stdout
    assert "(cluster torch; auto: sbatch found;" in out  # one settings.env: the cluster is still said
    wait_completed(torch, "001", {})
    assert intent(torch, "001")["cluster"] == "torch"
    run([*GIT, "init", "-q"], cwd=torch, user=USER)
    run([*GIT, "add", "-A"], cwd=torch, user=USER)
    run([*GIT, "commit", "-q", "-m", "trained 001 on torch"], cwd=torch, user=USER)

    clone = alice_dir / "clone-on-greene"
    try:
        run([*GIT, "clone", "-q", str(torch), str(clone)], cwd=alice_dir, user=USER)
        added = run(["/usr/bin/python3", "-m", "expflow", "profile", "add"], cwd=clone,
                    env={"PYTHONPATH": str(alice_site), **GREENE}, user=USER).stdout
        assert "to profiles/torch.env" in added and "[OK] wrote profiles/greene.env (cluster greene)" in added
        profile = (clone / "profiles" / "greene.env").read_text()
        for line in ("CLUSTER='greene'", "PARTITION='a100'", "GPU_TYPE='a100'", "SLURM_ACCOUNTING='0'",
                     "MAX_ARRAY_SIZE='501'", "ACCOUNT=''"):
            assert line in profile.splitlines(), line
        assert "ACCOUNT='torch_pr_68_general'" in (clone / "profiles" / "torch.env").read_text().splitlines()

        out = alice_make(clone, "train", "EXP=002", "SET=training.epochs=2", env=GREENE).stdout
        assert "(profile greene (cluster greene); auto: sbatch found; a100, 1x a100," in out
        assert (intent(clone, "002")["cluster"], intent(clone, "002")["profile"]) == ("greene", "greene")
        wait_completed(clone, "002", GREENE)
        record = json.loads(next((clone / "experiments" / "002" / "runs").glob("train-*.json")).read_text())
        assert (record["cluster"], record["partition"]) == ("greene", "a100")

        rows = status_rows(clone, user=USER, env=GREENE)  # greene asks only about its own job
        assert rows[("001", "train")]["STATE"] == "COMPLETED"
        assert rows[("001", "train")]["REASON"].startswith("on torch, last seen COMPLETED at 20")
        assert rows[("002", "train")]["REASON"] == ""
        rows = status_rows(clone, user=USER)  # the same clone seen from torch
        assert rows[("002", "train")]["REASON"].startswith("on greene, last seen COMPLETED at 20")
        assert rows[("001", "train")]["REASON"] == ""

        alice_make(clone, "results", env=GREENE)
        with open(clone / "results" / "results.csv", newline="") as handle:
            results = {row["id"]: row for row in csv.DictReader(handle)}
        assert {exp: (row["cluster"], row["partition"], row["state"]) for exp, row in results.items()} == {
            "001": ("torch", "cs", "COMPLETED"), "002": ("greene", "a100", "COMPLETED")}
        assert results["001"]["val_acc"] and results["002"]["val_acc"]
        alice_make(clone, "report", env=GREENE)
        report = (clone / "results" / "report.html").read_text()
        # both experiments and their clusters, whether the page holds cells or one JSON blob of the rows
        assert all(text in report for text in ("001", "002", "greene", "torch", "cluster")), report[:2000]

        refused = alice_make(clone, "resume", "EXP=001", env=GREENE, check=False)
        assert refused.returncode != 0
        job_id = metadata(torch, "001")["jobs"][0]["job_id"]
        assert (f"error: the training of 001 ran on torch (job {job_id}, last seen COMPLETED), this is greene: its "
                "checkpoints may be on torch's scratch") in refused.stderr
        refused = alice_make(clone, "eval", "EXP=001", env=GREENE, check=False)
        assert "add FORCE=1 to evaluate it here anyway" in refused.stderr
        missing = alice_make(clone, "train", "EXP=003", env={**GREENE, "PROFILE": "amarel"}, check=False)
        assert "PROFILE=amarel: there is no profiles/amarel.env (profiles: greene, torch)" in missing.stderr

        # a job still running on torch, seen and cancelled from greene: shown, never cancelled by its id there
        out = alice_make(clone, "train", "EXP=004", "SET=training.epochs=100 training.seconds_per_epoch=2").stdout
        assert "(profile torch (cluster torch); auto: sbatch found; cs," in out
        torch_job = metadata(clone, "004")["jobs"][0]["job_id"]
        wait_for(lambda: list((clone / "experiments" / "004" / "runs").glob("train-*.json")), what="004 to start")
        row = status_rows(clone, user=USER, env=GREENE)[("004", "train")]
        assert row["REASON"].startswith("on torch, last seen RUNNING at 20")
        out = alice_make(clone, "cancel", "EXP=004", env=GREENE)
        assert f"WARNING: job {torch_job} runs on torch, not here: cancel it there" in out.stderr
        assert "experiment 004 has no job left to cancel" in out.stdout
        assert status_rows(clone, user=USER)[("004", "train")]["STATE"] in ("PENDING", "RUNNING")  # sacct lags
        alice_make(clone, "cancel", "EXP=004")
    finally:
        cancel_greene_jobs_under(alice_dir)


def test_the_cluster_answer_is_cached_per_slurm_conf(alice_site, alice_dir, greene):
    """Asked of the real controllers once, then read from .expflow/ (one file
    per host and SLURM_CONF: the two clusters never share an answer)."""
    expflow_as_alice(alice_site, alice_dir, "scaffold", "cached", "--no-input", "--set", "partition=cs")
    project = alice_dir / "cached"
    probe = ("import sys; sys.path.insert(0, '.'); import expflow_runtime.profiles as p, os; "
             "print(p.cluster_here('.', os.environ)[0], p.cache_path('.', os.environ))")
    torch_name, torch_cache = run(["python3", "-I", "-c", probe], cwd=project, user=USER).stdout.split()
    greene_name, greene_cache = run(["python3", "-I", "-c", probe], cwd=project, user=USER, env=GREENE).stdout.split()
    assert (torch_name, greene_name) == ("torch", "greene") and torch_cache != greene_cache
    assert json.loads(Path(project / greene_cache).read_text())["cluster"] == "greene"


def test_one_cluster_s_access_check_is_never_read_on_the_other(alice_site, alice_dir, greene):
    """A project in a home both clusters share, a profile for each: the access
    check `make resources REFRESH=1` cached on torch names torch, and greene's
    `make resources` does not take it for its own (torch's accounts were never
    asked about greene's a100, so they did not refuse it: the job can run
    there); greene's own check then names greene, which torch does not read."""
    expflow_as_alice(alice_site, alice_dir, "scaffold", "shared", "--no-input", "--set", "partition=cs",
                     "--set", "gpus=0", "--set", "gpu_type=")
    project = alice_dir / "shared"
    run(["/usr/bin/python3", "-m", "expflow", "profile", "add"], cwd=project,
        env={"PYTHONPATH": str(alice_site), **GREENE}, user=USER)
    cache = project / ".expflow" / "access.json"

    def report(env: dict[str, str]) -> dict:
        return json.loads(alice_make(project, "resources", "JSON=1", env=env).stdout)

    alice_make(project, "resources", "REFRESH=1")
    assert json.loads(cache.read_text())["cluster"] == "torch"
    assert report({})["access_checked"] == json.loads(cache.read_text())["checked"]
    on_greene = report(GREENE)
    assert on_greene["access_checked"] is None
    assert [place["partition"] for place in on_greene["recommendation"]["partitions"]] == ["a100"]
    assert on_greene["recommendation"]["verdict"] in ("start_now", "queue")

    alice_make(project, "resources", "REFRESH=1", env=GREENE)
    access = json.loads(cache.read_text())
    assert access["cluster"] == "greene" and [entry["accepted"] for entry in access["accounts"]] == [["a100"]]
    assert report(GREENE)["recommendation"]["partitions"][0]["accounts"] == [""]  # the user's default account
    assert report({})["access_checked"] is None
