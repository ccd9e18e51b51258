"""The product on a real scheduler: the project's single-host SLURM test
cluster (tests/cluster/start.sh), used as the non-root user alice would."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, make, metadata, run, status_rows, wait_for
from test_local_backend import error_line, set_config

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

USER = "alice"
SCHEDULER_COMMANDS = ("sbatch", "sacct", "squeue", "scancel", "sinfo", "scontrol", "sacctmgr")


@pytest.fixture(scope="session")
def alice_site(slurm_cluster) -> Path:
    """expflow installed where alice can import it (she cannot read root's Python)."""
    site = Path(tempfile.mkdtemp(prefix="expflow-alice-site-"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-warn-conflicts", "--target", str(site),
                    str(REPO)], check=True, capture_output=True)
    subprocess.run(["chmod", "-R", "a+rX", str(site)], check=True)
    os.chmod(site, 0o755)
    yield site
    shutil.rmtree(site, ignore_errors=True)


@pytest.fixture
def alice_dir() -> Path:
    """A working directory that belongs to alice."""
    path = Path(tempfile.mkdtemp(prefix="expflow-e2e-"))
    shutil.chown(path, USER, USER)
    os.chmod(path, 0o755)
    yield path
    cancel_jobs_under(path)
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(Path("/scratch") / USER / path.name, ignore_errors=True)


def cancel_jobs_under(path: Path) -> None:
    """Cancel alice's jobs whose working directory is under path: this test's
    own, never another run's on a shared cluster (never every job of the user)."""
    queued = subprocess.run(["squeue", "--user", USER, "--noheader", "--format=%i|%Z"], capture_output=True,
                            text=True).stdout
    mine = [job_id for job_id, _, work_dir in (line.partition("|") for line in queued.splitlines())
            if work_dir == str(path) or work_dir.startswith(str(path) + "/")]
    if mine:
        subprocess.run(["scancel", *mine], capture_output=True)


def expflow_as_alice(site: Path, cwd: Path, *args: str, check: bool = True):
    return run(["/usr/bin/python3", "-m", "expflow", *args], cwd=cwd, env={"PYTHONPATH": str(site)},
               user=USER, check=check)


def alice_make(project: Path, *args: str, **kwargs):
    return make(project, *args, user=USER, **kwargs)


def wait_state(project: Path, exp: str, stage: str, states: set[str], timeout: float = 120) -> dict:
    def reached():
        row = status_rows(project, user=USER).get((exp, stage))
        return row if row and row["STATE"] in states else None
    return wait_for(reached, timeout=timeout, interval=1, what=f"{exp} {stage} in {states}")


@pytest.fixture
def project(alice_site, alice_dir) -> Path:
    """A project scaffolded by alice; named like its directory, so that its
    checkpoints (/scratch/alice/<name>/) are its own."""
    name = alice_dir.name
    expflow_as_alice(alice_site, alice_dir, "scaffold", name, "--no-input", "--set", "partition=l40s_public")
    return alice_dir / name


def test_detection_matches_the_cluster_as_root_and_as_alice(alice_site, alice_dir):
    as_root = json.loads(run([sys.executable, "-m", "expflow", "info", "--json"], cwd=REPO).stdout)
    as_alice = json.loads(expflow_as_alice(alice_site, alice_dir, "info", "--json").stdout)
    for facts, user in ((as_root, "root"), (as_alice, USER)):
        assert facts["user"] == user and facts["cluster"] == "torch" and facts["accounting"] is True
        assert {(p["name"], tuple(p["gpu_types"]), p["gpus_per_node"]) for p in facts["partitions"]} == {
            ("cs", (), 0), ("rtx8000", ("rtx8000",), 4), ("l40s_public", ("l40s",), 4), ("h200_tandon", ("h200",), 8),
            ("a100_multi", ("a100",), 2), ("preemptible", (), 0), ("priority", (), 0)}
        assert facts["default_partition"] == "cs" and facts["default_account"] == "torch_pr_68_general"
        assert sorted(facts["accounts"]) == ["torch_pr_68_general", "torch_pr_68_tandon_advanced"]
        assert facts["max_array_size"] == 1001
    assert as_alice["scratch"] == "/scratch/alice" and as_alice["sources"]["scratch"] == "/scratch/{user}"


def test_gpu_train_then_eval_afterok_to_results(project):
    settings = (project / "settings.env").read_text()
    assert "PARTITION='l40s_public'" in settings and "GPU_TYPE='l40s'" in settings and "GPUS='1'" in settings
    assert "SCRATCH_ROOT='/scratch/alice'" in settings
    alice_make(project, "new", "EXP=001")
    set_config(project, "001", seconds_per_epoch=3)
    out = alice_make(project, "train", "EXP=001").stdout
    assert "(cluster torch; auto: sbatch found; l40s_public, 1x l40s, 01:00:00)" in out
    out = alice_make(project, "eval", "EXP=001").stdout
    assert "after train job" in out
    # the reason appears once the scheduler has looked at the job (sched_interval)
    def waiting_on_train():
        row = status_rows(project, user=USER).get(("001", "eval"))
        return row if row and row["STATE"] == "PENDING" and row["REASON"] == "Dependency" else None
    wait_for(waiting_on_train, timeout=30, interval=0.5, what="eval PENDING (Dependency)")
    eval_job = metadata(project, "001")["jobs"][1]
    assert f"--dependency=afterok:{eval_job['after']}" in eval_job["sbatch"]
    assert status_rows(project, user=USER)[("001", "train")]["STATE"] in ("PENDING", "RUNNING")
    wait_state(project, "001", "eval", {"COMPLETED"})
    train = status_rows(project, user=USER)[("001", "train")]
    assert (train["STATE"], train["EXIT"], train["PARTITION"], train["GPU"], train["NODE"]) == (
        "COMPLETED", "0", "l40s_public", "1x l40s", "gl001")
    alice_make(project, "results")
    with open(project / "results" / "results.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert (row["id"], row["state"], row["eval_state"], row["gpu_type"], row["node"]) == (
        "001", "COMPLETED", "COMPLETED", "l40s", "gl001")
    assert (row["val_acc"], row["test_acc"], row["account"]) == ("0.81488", "0.80488", "torch_pr_68_general")
    record = json.loads(next((project / "experiments/001/runs").glob("train-*.json")).read_text())
    assert record["cuda_visible_devices"] == "0" and record["partition"] == "l40s_public"
    checkpoints = project / "experiments/001/checkpoints"
    assert checkpoints.is_symlink() and os.readlink(checkpoints) == f"/scratch/alice/{project.name}/checkpoints/001"
    assert (checkpoints / "last.json").stat().st_uid == (project / "Makefile").stat().st_uid


def test_exit_code_3_is_failed_in_status_and_results(project):
    alice_make(project, "new", "EXP=bad")
    set_config(project, "bad", fail_with_exit_code=3)
    alice_make(project, "train", "EXP=bad", "PARTITION=cs", "GPUS=0")
    row = wait_state(project, "bad", "train", {"FAILED"})
    assert row["EXIT"] == "3" and row["PARTITION"] == "cs"
    alice_make(project, "results")
    with open(project / "results" / "results.csv", newline="") as handle:
        result = next(csv.DictReader(handle))
    assert (result["state"], result["exit_code"]) == ("FAILED", "3")


def test_make_check_names_the_nodes_and_why_they_do_not_fit(project):
    result = alice_make(project, "check", "NODES=2", check=False)
    assert error_line(result) == (
        "error: SLURM would refuse the project's settings (l40s_public, 2 nodes, 1x l40s per node, 01:00:00, "
        "account torch_pr_68_general): Node count specification invalid: partition l40s_public has 1 node "
        "(NODES='2' from the command line, PARTITION='l40s_public' from settings.env)")

def test_eval_after_a_training_that_fails_is_ended_by_slurm_and_then_refused(project):
    """--kill-on-invalid-dep=yes: an eval waiting (afterok) on a training that then
    FAILED does not wait for ever; status says why; a new make eval is refused at once."""
    alice_make(project, "new", "EXP=doomed", "PARTITION=cs", "GPUS=0")
    set_config(project, "doomed", fail_with_exit_code=3, seconds_per_epoch=0.5)
    alice_make(project, "train", "EXP=doomed")
    alice_make(project, "eval", "EXP=doomed")
    train_id, eval_job = metadata(project, "doomed")["jobs"][0]["job_id"], metadata(project, "doomed")["jobs"][1]
    assert f"--dependency=afterok:{train_id}" in eval_job["sbatch"]
    assert "--kill-on-invalid-dep=yes" in eval_job["sbatch"]
    row = wait_state(project, "doomed", "eval", {"CANCELLED"})
    assert row["REASON"] == f"train job {train_id} ended FAILED: cancelled by SLURM, its dependency can never be met"
    assert status_rows(project, user=USER)[("doomed", "train")]["STATE"] == "FAILED"
    result = alice_make(project, "eval", "EXP=doomed", "RESUBMIT=1", check=False)
    assert error_line(result) == f"error: train job {train_id} of doomed ended FAILED (exit 3): eval not submitted"
    assert len(metadata(project, "doomed")["jobs"]) == 2  # nothing submitted, nothing written down

def test_mail_without_an_address_is_said_and_mail_user_goes_to_sbatch(project):
    quiet = alice_make(project, "train", "EXP=m1", "PARTITION=cs", "GPUS=0", "MAIL_TYPE=END")
    assert "WARNING: MAIL_TYPE=END without MAIL_USER: SLURM mails your account on the cluster" in quiet.stderr
    told = alice_make(project, "train", "EXP=m2", "PARTITION=cs", "GPUS=0", "MAIL_TYPE=END,FAIL",
                      "MAIL_USER=alice@example.edu")
    assert "WARNING" not in told.stderr
    sbatch = metadata(project, "m2")["jobs"][0]["sbatch"]
    assert "--mail-type=END,FAIL" in sbatch and "--mail-user=alice@example.edu" in sbatch
    job = run(["scontrol", "show", "job", metadata(project, "m2")["jobs"][0]["job_id"]], cwd=REPO, check=False).stdout
    assert "MailUser=alice@example.edu" in job or not job  # scontrol forgets a job soon after it ends

def test_cancel_a_running_job(project):
    alice_make(project, "new", "EXP=long")
    set_config(project, "long", seconds_per_epoch=60)
    alice_make(project, "train", "EXP=long")
    wait_state(project, "long", "train", {"RUNNING"})
    assert "[OK] cancel requested for long" in alice_make(project, "cancel", "EXP=long").stdout
    wait_state(project, "long", "train", {"CANCELLED"})


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("ACCOUNT=no_such_acct", "Invalid account or account/partition combination specified"),
        ("GPU_TYPE=h200", "Requested node configuration is not available"),
        ("TIME=3-00:00:00", "Requested time limit is invalid (missing or exceeds some limit)"),
    ],
)
def test_rejected_submission_says_why_and_leaves_nothing_submitted(project, override, reason):
    result = alice_make(project, "train", "EXP=rej", override, check=False)
    assert result.returncode != 0
    error = error_line(result)
    assert error.startswith(f"error: SLURM rejected the job: {reason}")
    assert error.endswith("experiment rej was not kept")
    assert f"{override.replace('=', '=' + chr(39))}' from the command line" in error
    # nothing ran: the refused values are not kept for the next make train EXP=rej
    assert not (project / "experiments" / "rej").exists()
    assert not (Path("/scratch") / USER / project.name / "checkpoints" / "rej").exists()
    assert ("rej", "") not in status_rows(project, user=USER)


def test_a_refused_value_kept_by_an_experiment_is_named_with_its_file(project):
    """GPUS=2 on another partition keeps the settings' GPU_TYPE: the error says
    which value conflicts; a value an experiment keeps is named with its file."""
    result = alice_make(project, "train", "EXP=other", "PARTITION=h200_tandon", "GPUS=2", check=False)
    assert error_line(result) == (
        "error: SLURM rejected the job: Requested node configuration is not available: partition h200_tandon has "
        "no l40s GPUs (it has h200) (GPU_TYPE='l40s' from settings.env, PARTITION='h200_tandon' from the command "
        "line); experiment other was not kept")
    alice_make(project, "new", "EXP=kept", "PARTITION=nosuch")
    result = alice_make(project, "train", "EXP=kept", check=False)
    assert error_line(result).endswith(
        ": there is no partition nosuch (PARTITION='nosuch' from experiments/kept/settings.env)")
    assert metadata(project, "kept")["jobs"] == []  # an experiment made by make new stays


def recording_wrappers(bin_dir: Path, log: Path) -> None:
    """Scheduler commands that log each call and run the real one."""
    bin_dir.mkdir()
    for name in SCHEDULER_COMMANDS:
        real = shutil.which(name)
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/bash\necho "{name} $*" >> "{log}"\nexec "{real}" "$@"\n')
        wrapper.chmod(0o755)


def test_status_makes_one_scheduler_call_for_200_experiments(project, alice_dir):
    alice_make(project, "new", "EXP=seed")
    set_config(project, "seed", seconds_per_epoch=60)
    alice_make(project, "train", "EXP=seed")
    wait_state(project, "seed", "train", {"RUNNING"})
    seed = project / "experiments" / "seed"
    for index in range(200):  # 200 experiments whose train job is still running
        shutil.copytree(seed, project / "experiments" / f"copy{index:03d}", symlinks=True)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(project / "experiments")], check=True)
    log = alice_dir / "calls.log"
    recording_wrappers(alice_dir / "bin", log)
    path = f"{alice_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    for target in ("status", "results"):
        log.write_text("")
        os.chmod(log, 0o666)
        rows = status_rows(project, user=USER, env={"PATH": path}) if target == "status" else None
        if rows is not None:
            assert len(rows) == 201 and {r["STATE"] for r in rows.values()} == {"RUNNING"}
        else:
            make(project, "results", user=USER, env={"PATH": path})
        calls = log.read_text().splitlines()
        assert len(calls) == 1 and calls[0].startswith("sacct "), calls
    alice_make(project, "cancel", "EXP=seed")


def test_resume_after_a_crash_on_the_cluster(project):
    alice_make(project, "new", "EXP=r", "SET_NEW=1", "SET=crash_at_epoch=2 training.seconds_per_epoch=0.2")
    alice_make(project, "train", "EXP=r")
    assert wait_state(project, "r", "train", {"FAILED"})["EXIT"] == "1"
    alice_make(project, "resume", "EXP=r")
    wait_state(project, "r", "train", {"COMPLETED"})
    jobs = metadata(project, "r")["jobs"]
    assert [job["attempt"] for job in jobs] == [1, 2] and jobs[0]["job_id"] != jobs[1]["job_id"]
    exported = next(arg for arg in jobs[1]["sbatch"] if arg.startswith("--export=ALL,"))
    assert {"EXPFLOW_ATTEMPT=2", "EXPFLOW_RESUME=1"} <= set(exported.split(","))
    logs = alice_make(project, "logs", "EXP=r").stdout
    assert "resuming at epoch 2 (attempt 2)" in logs
    assert (project / "experiments/r" / jobs[0]["log"]).read_text().count("crashing at epoch 2") == 1


def test_reproducibility_records_on_the_cluster(project, alice_dir):
    def git(*args):
        return run(["git", "-c", "user.name=Alice", "-c", "user.email=alice@example.org", *args], cwd=project,
                   user=USER).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "project")
    commit = git("rev-parse", "HEAD").strip()
    run(["sed", "-i", "s/Example training code/Alice's training code/", "train.py"], cwd=project, user=USER)
    result = alice_make(project, "train", "EXP=rep")
    assert "WARNING: submitted from a dirty git tree" in result.stderr
    wait_state(project, "rep", "train", {"COMPLETED"})
    job = metadata(project, "rep")["jobs"][0]
    assert job["git"]["commit"] == commit and job["git"]["dirty"] is True
    clone = alice_dir / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], cwd=alice_dir, user=USER)
    run(["git", "checkout", "-q", commit], cwd=clone, user=USER)
    run(["git", "apply", str(project / "experiments/rep" / job["git"]["patch"])], cwd=clone, user=USER)
    assert (clone / "train.py").read_text() == (project / "train.py").read_text()
    record = json.loads((project / "experiments/rep/runs" / f"train-{job['job_id']}.json").read_text())
    assert record["allocated_gpus"] == {"type": "l40s", "count": 1}
    assert record["node"] == "gl001" and record["nodelist"] == "gl001" and record["account"] == "torch_pr_68_general"
    packages = (project / "experiments/rep" / record["packages"]["file"]).read_text()
    assert record["packages"]["tool"] == "pip freeze" and packages.strip()


def test_eval_on_another_gpu_type_warns_and_is_recorded(project):
    alice_make(project, "train", "EXP=g")
    wait_state(project, "g", "train", {"COMPLETED"})
    result = alice_make(project, "eval", "EXP=g", "PARTITION=h200_tandon", "GPU_TYPE=h200")
    assert "WARNING: eval job" in result.stderr and "runs on h200, its training ran on l40s" in result.stderr
    job = metadata(project, "g")["jobs"][-1]
    assert job["gpu_type_change"] == {"from": "l40s", "to": "h200", "reference": "its training"}
    wait_state(project, "g", "eval", {"COMPLETED"})


def alice_sweep(project, name, text):
    path = project / "configs" / f"{name}.yaml"
    path.write_text(text)
    shutil.chown(path, USER, USER)
    return f"configs/{name}.yaml"


def sweep_states(project, name):
    rows = status_rows(project, user=USER, env={"SWEEP": name})
    return {exp: row["STATE"] for (exp, stage), row in rows.items() if stage == "train"}


def wait_sweep(project, name, count, states, timeout=240):
    def reached():
        found = sweep_states(project, name)
        return found if len(found) == count and set(found.values()) <= states else None
    return wait_for(reached, timeout=timeout, interval=2, what=f"sweep {name} in {states}")


def test_sweep_of_12_points_is_one_array_with_aftercorr_eval(project):
    grid = ("set:\n  training.seconds_per_epoch: 0.2\ngrid:\n  optimizer.lr: [0.05, 0.1, 0.2, 0.4]\n"
            "  model.depth: [2, 3, 4]\n")
    out = alice_make(project, "sweep", f"SWEEP={alice_sweep(project, 'grid12', grid)}", "MAX_PARALLEL=4").stdout
    assert "[OK] submitted 12 train tasks of sweep grid12 as array" in out
    jobs = [metadata(project, f"grid12-{i:04d}")["jobs"][0]
            for i in range(1, 13)]
    assert len({job["array_job_id"] for job in jobs}) == 1
    assert [job["job_id"] for job in jobs] == [f"{jobs[0]['array_job_id']}_{i}" for i in range(12)]
    array = jobs[0]["array_job_id"]

    def running_tasks():
        out = run(["squeue", "--noheader", "--jobs", array, "--array", "--format=%i %T"], cwd=project).stdout
        return out.count("RUNNING")
    assert wait_for(running_tasks, timeout=60, interval=0.5, what="running tasks") <= 4  # MAX_PARALLEL=4
    eval_out = alice_make(project, "eval", "SWEEP=grid12").stdout
    assert "submitted 12 eval tasks of sweep grid12" in eval_out
    wait_sweep(project, "grid12", 12, {"COMPLETED"})
    def evals_done():
        rows = status_rows(project, user=USER, env={"SWEEP": "grid12"})
        return all(row["STATE"] == "COMPLETED" for (_, stage), row in rows.items() if stage == "eval")
    wait_for(evals_done, timeout=240, interval=2, what="12 evaluations")
    eval_job = metadata(project, "grid12-0001")["jobs"][-1]
    alice_make(project, "results", "FILTER=sweep=grid12")
    with open(project / "results" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and all(row["val_acc"] and row["test_acc"] for row in rows)
    assert {row["optimizer.lr"] for row in rows} == {"0.05", "0.1", "0.2", "0.4"}
    log = (project / "experiments/grid12-0001" / jobs[0]["log"]).resolve()
    assert log.name == f"train-{array}_0.out" and "epoch 4:" in log.read_text()
    assert eval_job["stage"] == "eval" and eval_job["array_job_id"] != array


def test_sweep_retry_resubmits_only_the_failed_point(project):
    text = ("allow_new: true\nset:\n  training.seconds_per_epoch: 0.1\nzip:\n  optimizer.lr: [0.1, 0.2, 0.3]\n"
            "  crash_at_epoch: [-1, 2, -1]\n")
    alice_make(project, "sweep", f"SWEEP={alice_sweep(project, 'flaky', text)}")
    states = wait_sweep(project, "flaky", 3, {"COMPLETED", "FAILED"})
    assert states == {"flaky-0001": "COMPLETED", "flaky-0002": "FAILED", "flaky-0003": "COMPLETED"}
    out = alice_make(project, "sweep-retry", "SWEEP=flaky").stdout
    assert "retrying flaky-0002 (FAILED)" in out and "submitted 1 train task of sweep flaky" in out
    wait_sweep(project, "flaky", 3, {"COMPLETED"})
    jobs = metadata(project, "flaky-0002")["jobs"]
    assert [job["attempt"] for job in jobs] == [1, 2]
    assert len(metadata(project, "flaky-0001")["jobs"]) == 1


def test_cancelling_a_sweep_cancels_all_its_tasks(project):
    text = "set:\n  training.seconds_per_epoch: 60\ngrid:\n  optimizer.lr: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]\n"
    alice_make(project, "sweep", f"SWEEP={alice_sweep(project, 'long', text)}", "MAX_PARALLEL=2")
    wait_for(lambda: "RUNNING" in sweep_states(project, "long").values(), timeout=60, what="a running task")
    assert "[OK] cancel requested for sweep long: 6 unfinished jobs" in alice_make(
        project, "cancel", "SWEEP=long").stdout
    wait_sweep(project, "long", 6, {"CANCELLED"})


def test_a_1000_point_sweep_is_one_sbatch_call(project, alice_dir):
    values = ", ".join(str(i) for i in range(1000))
    text = f"set:\n  training.seconds_per_epoch: 30\nzip:\n  training.seed: [{values}]\n"
    sweep_file = alice_sweep(project, "big", text)
    log = alice_dir / "calls.log"
    recording_wrappers(alice_dir / "bin", log)
    log.write_text("")
    os.chmod(log, 0o666)
    path = f"{alice_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    out = make(project, "sweep", f"SWEEP={sweep_file}", "MAX_PARALLEL=1", "PARTITION=cs", "GPUS=0", user=USER,
               env={"PATH": path}).stdout
    assert "[OK] submitted 1000 train tasks of sweep big as array" in out
    calls = [line.split()[0] for line in log.read_text().splitlines()]
    assert calls.count("sbatch") == 1 and "--array=0-999%1" in log.read_text()
    assert len(calls) <= 2, calls  # at most one more: sacct, for completed configs to skip
    alice_make(project, "cancel", "SWEEP=big")
