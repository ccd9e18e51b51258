"""The job ledger under faults, on the project's real SLURM cluster as alice:
Ctrl-C at random instants, sbatch answering late or never, concurrent make
train, requeues, an unreachable controller. The figures the issue asks for: 0
untracked and 0 duplicate jobs after the next make status / make sweep.

Fake scheduler commands here only wrap the real ones (a late answer, a failing
sacct); every job is a real SLURM job, and a test cancels only the ids it saw."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import test_slurm_cluster
from conftest import metadata, run, status_rows, wait_for
from test_slurm_cluster import USER, alice_make, expflow_as_alice

pytestmark = pytest.mark.slurm
alice_site = test_slurm_cluster.alice_site  # the fixtures the project below is made with
alice_dir = test_slurm_cluster.alice_dir


@pytest.fixture
def project(alice_site, alice_dir) -> Path:
    """A project of alice's on partition cs (no GPUs: the faults are the point)."""
    expflow_as_alice(alice_site, alice_dir, "scaffold", alice_dir.name, "--no-input", "--set", "partition=cs",
                     "--set", "gpus=0", "--set", "gpu_type=")
    return alice_dir / alice_dir.name

REAL = {name: subprocess.run(["which", name], capture_output=True, text=True).stdout.strip()
        for name in ("sbatch", "sacct", "squeue")}


def wrapper_bin(where: Path, scripts: dict[str, str]) -> str:
    """A bin directory (where alice can read it: beside her project), with the
    given wrappers; PATH for make."""
    where.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        path = where / name
        path.write_text("#!/bin/bash\n" + body)
        path.chmod(0o755)
    where.chmod(0o755)
    return f"{where}:{os.environ['PATH']}"


def slurm_jobs(project: Path, prefix: str) -> dict[str, str]:
    """{job id: name} of this project's jobs (by their working directory) whose
    name starts with prefix, queued, running or ended, as SLURM knows them."""
    out = run(["sacct", "--user", USER, "--noheader", "--parsable2", "--allocations", "--starttime=now-1hour",
               "--format=JobID,JobName,WorkDir"], cwd=Path("/")).stdout
    queued = run(["squeue", "--user", USER, "--noheader", "--format=%i|%j|%Z"], cwd=Path("/")).stdout
    jobs = {}
    for line in (out + queued).splitlines():
        job_id, name, work_dir = (line.split("|") + ["", ""])[:3]
        if name.startswith(prefix) and work_dir == str(project):
            jobs[job_id.split("_")[0]] = name
    return jobs


def cancel(job_ids) -> None:
    if job_ids:
        subprocess.run(["scancel", *sorted(job_ids)], capture_output=True)


def recorded_ids(project: Path, exp: str) -> list[str]:
    return [str(job["job_id"]).split("_")[0] for job in metadata(project, exp)["jobs"] if job.get("job_id")]


def training_job(project: Path, exp: str, partition: str = "cs") -> str:
    """Submit EXP's training and wait until its program trains (RUNNING in SLURM
    and its first epoch written); the job id."""
    alice_make(project, "train", f"EXP={exp}", f"PARTITION={partition}")
    job_id = recorded_ids(project, exp)[0]
    wait_for(lambda: status_rows(project, user=USER)[(exp, "train")]["STATE"] == "RUNNING", what="RUNNING")
    wait_for(lambda: (project / f"experiments/{exp}/train_metrics.jsonl").exists(), what=f"{exp} training")
    return job_id


def quick_config(project: Path, seconds: float = 0.2, epochs: int = 3) -> None:
    config = project / "configs" / "default.yaml"
    text = re.sub(r"seconds_per_epoch: [0-9.]+", f"seconds_per_epoch: {seconds}", config.read_text())
    config.write_text(re.sub(r"epochs: \d+", f"epochs: {epochs}", text))


def test_ctrl_c_at_random_instants_leaves_no_untracked_or_duplicate_job(project):
    """40 trials: make train interrupted 0-300 ms in, as a terminal's Ctrl-C does
    (SIGINT to the whole process group). After the next make status every job
    SLURM has is recorded, and a second make train never makes a second job."""
    quick_config(project, seconds=30, epochs=1)
    rng = random.Random(11)
    ids = [f"c{i:02d}" for i in range(40)]
    for exp in ids + ["t00", "t01"]:
        alice_make(project, "new", f"EXP={exp}", "PARTITION=cs")
    outcomes = {"interrupted": 0, "finished": 0}
    try:
        # the instants span one and a half make trains as long as one takes here
        # (a fixed span would miss more of them as the runtime starts faster)
        took = []
        for exp in ("t00", "t01"):
            started = time.perf_counter()
            alice_make(project, "train", f"EXP={exp}")
            took.append(time.perf_counter() - started)
        span = 1.5 * min(took)
        for exp in ids:
            proc = subprocess.Popen(["runuser", "-u", USER, "--", "make", "--no-print-directory", "train",
                                     f"EXP={exp}"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
            time.sleep(rng.uniform(0.0, span))
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=120)
            assert b"Traceback" not in err, err.decode()
            outcomes["interrupted" if proc.returncode else "finished"] += 1
        status_rows(project, user=USER)
        in_slurm = slurm_jobs(project, "c")
        for exp in ids:
            assert len(recorded_ids(project, exp)) <= 1, f"{exp}: two jobs recorded"
        recorded = {job_id for exp in ids for job_id in recorded_ids(project, exp)}
        assert set(in_slurm) == recorded, f"untracked: {set(in_slurm) - recorded}"
        # whatever was interrupted can be submitted again, once: no duplicates
        for exp in ids:
            again = alice_make(project, "train", f"EXP={exp}", check=False)
            assert again.returncode == 0 or "already has a train job" in again.stderr, again.stderr
        in_slurm = slurm_jobs(project, "c")
        names = list(in_slurm.values())
        assert all(names.count(f"{exp}-train") <= 1 for exp in ids)
        per_exp = {exp: [n for n in names if n.startswith(f"{exp}-train.")] for exp in ids}
        assert all(len(found) == 1 for found in per_exp.values()), per_exp
        assert outcomes["interrupted"] >= 8, outcomes  # the instants did land inside make train
    finally:
        cancel(slurm_jobs(project, "c"))
        cancel(slurm_jobs(project, "t"))


def test_sbatch_that_answers_late_is_found_not_resubmitted(project):
    """sbatch submits but answers after the timeout: make train says the job may
    have been submitted (never "rejected"); make status adopts it; a second make
    train refuses; SLURM holds exactly one job. The same for a sweep's array."""
    quick_config(project)
    late_sbatch = f'"{REAL["sbatch"]}" "$@"; status=$?; sleep 6; exit $status\n'
    path = wrapper_bin(project.parent / "late-bin", {"sbatch": late_sbatch})
    slow = {"PATH": path, "EXPFLOW_SBATCH_TIMEOUT": "2"}
    try:
        late = alice_make(project, "train", "EXP=late", "PARTITION=cs", env=slow, check=False)
        assert late.returncode != 0
        assert "did not answer within 2 s; the job may have been submitted" in late.stderr
        assert "rejected" not in late.stderr
        rows = wait_for(lambda: (r := status_rows(project, user=USER))[("late", "train")]["JOB"] and r,
                        what="the late job adopted")
        job_id = rows[("late", "train")]["JOB"]
        assert rows[("late", "train")]["STATE"] != "SUBMITTING"
        assert set(slurm_jobs(project, "late-train")) == {job_id}
        again = alice_make(project, "train", "EXP=late", check=False)
        assert again.returncode != 0 and f"already has a train job ({job_id})" in again.stderr
        wait_for(lambda: status_rows(project, user=USER)[("late", "train")]["STATE"] == "COMPLETED", timeout=120,
                 what="late COMPLETED")

        sweep = project / "configs" / "latesweep.yaml"
        sweep.write_text("grid:\n  training.seed: [1, 2, 3]\nresources:\n  PARTITION: cs\n  GPUS: 0\n")
        late = alice_make(project, "sweep", "SWEEP=configs/latesweep.yaml", env=slow, check=False)
        assert late.returncode != 0 and "may have been submitted" in late.stderr
        points = [f"latesweep-000{i}" for i in (1, 2, 3)]
        wait_for(lambda: status_rows(project, user=USER) and all(recorded_ids(project, p) for p in points),
                 what="the late array adopted")
        arrays = {recorded_ids(project, point)[0] for point in points}
        assert len(arrays) == 1 and arrays == set(slurm_jobs(project, "latesweep-train"))
        again = alice_make(project, "sweep", "SWEEP=configs/latesweep.yaml").stdout
        assert again.count("already submitted") == 3 and "nothing to submit" in again
    finally:
        cancel(slurm_jobs(project, "late"))


def test_submission_slurm_never_received_is_voided_after_the_bound(project):
    """sbatch hangs and submits nothing: after the bound the intent is void and
    make train submits (once)."""
    quick_config(project)
    path = wrapper_bin(project.parent / "hang-bin", {"sbatch": "sleep 30\n"})
    hung = alice_make(project, "train", "EXP=lost", "PARTITION=cs",
                      env={"PATH": path, "EXPFLOW_SBATCH_TIMEOUT": "1"}, check=False)
    assert hung.returncode != 0 and "may have been submitted" in hung.stderr
    assert status_rows(project, user=USER)[("lost", "train")]["STATE"] == "SUBMITTING"
    refused = alice_make(project, "train", "EXP=lost", check=False)
    assert refused.returncode != 0 and "still being looked for" in refused.stderr
    logs = alice_make(project, "logs", "EXP=lost", check=False)
    assert logs.returncode != 0 and "still being looked for" in logs.stderr and "Traceback" not in logs.stderr
    time.sleep(3)
    bound = {"EXPFLOW_UNRESOLVED_SECONDS": "2"}
    rows = status_rows(project, user=USER, env=bound)
    assert ("lost", "train") not in rows and rows[("lost", "")]["STATE"] == "NEW"
    try:
        alice_make(project, "train", "EXP=lost", env=bound)
        assert len(recorded_ids(project, "lost")) == 1
    finally:
        cancel(slurm_jobs(project, "lost-train"))


def test_concurrent_make_train_makes_exactly_one_job(project):
    """20 pairs of make train on one NEW experiment at the same instant."""
    quick_config(project)
    ids = [f"p{i:02d}" for i in range(20)]
    for exp in ids:
        alice_make(project, "new", f"EXP={exp}", "PARTITION=cs")
    try:
        for exp in ids:
            pair = [subprocess.Popen(["runuser", "-u", USER, "--", "make", "--no-print-directory", "train",
                                      f"EXP={exp}"], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True) for _ in range(2)]
            results = [proc.communicate(timeout=120) + (proc.returncode,) for proc in pair]
            assert sorted(code for _, _, code in results)[0] == 0, results
            failed = [err for _, err, code in results if code]
            assert len(failed) == 1, results
            assert "is busy" in failed[0] or "already has a train job" in failed[0], failed[0]
            assert len(recorded_ids(project, exp)) == 1
        # one SLURM job each; a job that started and ended within accounting's lag is
        # in neither squeue nor sacct for a moment: asked again until SLURM knows every one
        wait_for(lambda: all(sum(n.startswith(f"{exp}-train.") for n in slurm_jobs(project, "p").values()) == 1
                             for exp in ids), timeout=60, what="one SLURM job per experiment")
    finally:
        cancel(slurm_jobs(project, "p"))


def test_requeued_job_is_pending_not_cancelled_and_keeps_each_run(project):
    """scontrol requeue of a running job: status shows it PENDING with its restart
    (not CANCELLED 143), resume is refused, and the second run appends to the
    log and writes its own record."""
    quick_config(project, seconds=1, epochs=6)
    job_id = training_job(project, "rq")
    try:
        run(["scontrol", "requeue", job_id], cwd=project)
        row = wait_for(lambda: (r := status_rows(project, user=USER)[("rq", "train")])["STATE"].startswith(
            "PENDING") and r, what="PENDING after the requeue")
        assert "restart 1" in row["STATE"] and "REQUEUED" in row["STATE"]
        refused = alice_make(project, "resume", "EXP=rq", check=False)
        assert refused.returncode != 0 and "may still run" in refused.stderr
        run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], cwd=project)  # skip the requeue hold-off
        wait_for(lambda: status_rows(project, user=USER)[("rq", "train")]["STATE"].startswith("COMPLETED"),
                 timeout=150, what="COMPLETED after the restart")
        runs = sorted(p.name for p in (project / "experiments/rq/runs").glob("train-*.json"))
        assert runs == [f"train-{job_id}.json", f"train-{job_id}.r1.json"]
        log = (project / f"experiments/rq/logs/train-{job_id}.out").read_text()
        assert log.count("===== expflow: train of rq") == 2 and "restart 1" in log
    finally:
        cancel({job_id})


def test_archive_refuses_while_slurm_cannot_say_whether_a_job_runs(project):
    """sacct and squeue unreachable: a running job is UNKNOWN, which counts as
    "may still run": archive refuses (FORCE=1 would go on, with a WARNING)."""
    quick_config(project, seconds=30, epochs=2)
    job_id = training_job(project, "busy")
    try:
        down = wrapper_bin(project.parent / "down-bin", {"sacct": "echo 'sacct: error: slurmdbd down' >&2; exit 1\n",
                                               "squeue": "echo 'squeue: error: controller down' >&2; exit 1\n"})
        refused = alice_make(project, "archive", "EXP=busy", env={"PATH": down}, check=False)
        assert refused.returncode != 0 and "UNKNOWN" in refused.stderr and "may still run" in refused.stderr
        assert (project / "experiments/busy").is_dir() and not (project / "archive/busy").exists()
    finally:
        cancel({job_id})


def test_node_failure_is_shown_and_the_job_runs_again(project):
    """The node a job runs on goes down: SLURM requeues it (NODE_FAIL, then
    PENDING); status says so rather than CANCELLED or UNKNOWN, and the job's
    second run completes. Uses gr001 (partition rtx8000), which it sets down and
    lets return (ReturnToService=2)."""
    quick_config(project, seconds=1, epochs=6)
    job_id = training_job(project, "nf", partition="rtx8000")
    try:
        run(["scontrol", "update", "nodename=gr001", "state=down", "reason=expflow-test"], cwd=project)
        row = wait_for(lambda: (r := status_rows(project, user=USER)[("nf", "train")])["STATE"].startswith(
            "PENDING") and r, what="PENDING after the node failure")
        assert row["STATE"] == "PENDING (restart 1, after NODE_FAIL)"
        assert "may still run" in alice_make(project, "resume", "EXP=nf", check=False).stderr
        run(["scontrol", "update", "nodename=gr001", "state=resume"], cwd=project, check=False)
        run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], cwd=project)
        wait_for(lambda: status_rows(project, user=USER)[("nf", "train")]["STATE"].startswith("COMPLETED"),
                 timeout=150, what="COMPLETED after the restart")
        log = (project / f"experiments/nf/logs/train-{job_id}.out").read_text()
        assert "resuming at epoch" in log  # the second run went on from the first one's checkpoint
    finally:
        cancel({job_id})
        run(["scontrol", "update", "nodename=gr001", "state=resume"], cwd=project, check=False)


def test_ctrl_c_during_a_500_point_sweep_leaves_no_point_untracked_or_twice(project):
    """Ctrl-C at random instants of make sweep (creating 500 experiments, then one
    sbatch, then 500 records): after the next make sweep every array SLURM has is
    recorded, each point has exactly one job, and no array was submitted twice."""
    quick_config(project, seconds=30, epochs=1)
    rng = random.Random(5)
    seeds = ", ".join(str(i) for i in range(500))
    try:
        for trial in range(3):
            name = f"big{trial}"
            (project / "configs" / f"{name}.yaml").write_text(f"zip:\n  training.seed: [{seeds}]\n")
            proc = subprocess.Popen(["runuser", "-u", USER, "--", "make", "--no-print-directory", "sweep",
                                     f"SWEEP=configs/{name}.yaml", "MAX_PARALLEL=1"], cwd=project,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
            time.sleep(rng.uniform(0.3, 2.5))
            os.killpg(proc.pid, signal.SIGINT)
            proc.communicate(timeout=120)
            again = alice_make(project, "sweep", f"SWEEP=configs/{name}.yaml", "MAX_PARALLEL=1")
            assert "Traceback" not in again.stderr
            points = [f"{name}-{i:04d}" for i in range(1, 501)]
            recorded = {point: recorded_ids(project, point) for point in points}
            assert all(len(ids) == 1 for ids in recorded.values()), {p: i for p, i in recorded.items() if len(i) != 1}
            arrays = set(slurm_jobs(project, f"{name}-train."))
            assert {ids[0] for ids in recorded.values()} == arrays
    finally:
        cancel(slurm_jobs(project, "big"))
