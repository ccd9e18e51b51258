"""Long jobs (docs/long-jobs.md): before the time limit the program is asked to
save, the job requeues itself and resumes from its checkpoints, at most
MAX_RESTARTS times; then it ends TIMEOUT. On the local backend (a timer of the
job's shell) and on the real test cluster as alice."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import test_slurm_cluster
from conftest import make, metadata, status_rows, wait_for
from test_ledger import training_job
from test_local_backend import LOCAL
from test_slurm_cluster import USER, alice_make, expflow_as_alice

from expflow.runtime import module

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


def test_cancel_lets_the_program_save_and_kills_one_that_ignores_sigterm(bake):
    """make cancel (SIGTERM, as scancel and preemption send): the job script waits
    for a program that saves on SIGTERM; one that ignores it is killed after
    EXPFLOW_LOCAL_KILL_WAIT seconds, as SLURM does after KillWait."""
    project = bake()
    make(project, "new", "EXP=saves", "SET=training.seconds_per_epoch=3 training.epochs=20", env=LOCAL)
    make(project, "train", "EXP=saves", env=LOCAL)
    wait_for(lambda: (project / "experiments/saves/train_metrics.jsonl").exists(), what="the first epoch")
    make(project, "cancel", "EXP=saves", env=LOCAL)
    wait_for(lambda: status_rows(project, env=LOCAL)[("saves", "train")]["STATE"] == "CANCELLED", what="CANCELLED")
    log = next((project / "experiments/saves/logs").glob("train-*.out")).read_text()
    assert "saved at epoch" in log  # it finished its epoch and saved before the run ended
    assert len(epochs_of(project, "saves")) >= 2

    script = project / "scripts/train.sbatch"
    script.write_text(script.read_text().replace(
        "python3 train.py", "python3 -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "time.sleep(300)'"))
    make(project, "new", "EXP=deaf", env=LOCAL)
    make(project, "train", "EXP=deaf", env=dict(LOCAL, EXPFLOW_LOCAL_KILL_WAIT="2"))
    wait_for(lambda: status_rows(project, env=LOCAL)[("deaf", "train")]["STATE"] == "RUNNING", what="RUNNING")
    make(project, "cancel", "EXP=deaf", env=LOCAL)
    wait_for(lambda: status_rows(project, env=LOCAL)[("deaf", "train")]["STATE"] == "CANCELLED", timeout=20,
             what="CANCELLED once the program was killed")


def test_cancel_while_the_job_sets_itself_up_is_recorded_cancelled(bake):
    """make cancel right after make train lands while the job script still sets
    itself up (settings, its id, its start record: the runtime's own steps): the
    signal is noted and acted on once the run can record its end. Bash must not
    run the note in a command substitution's subshell (job-lib.sh takes none):
    that was a syntax error, exit 2, and the run recorded FAILED."""
    project = bake()
    delays = (0.0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4)
    for delay in delays:
        exp = f"early{int(delay * 100)}"
        make(project, "new", f"EXP={exp}", "SET=training.seconds_per_epoch=5", env=LOCAL)
        make(project, "train", f"EXP={exp}", env=LOCAL)
        time.sleep(delay)
        make(project, "cancel", f"EXP={exp}", env=LOCAL)
    for exp in (f"early{int(delay * 100)}" for delay in delays):
        wait_for(lambda exp=exp: status_rows(project, env=LOCAL)[(exp, "train")]["STATE"] == "CANCELLED",
                 timeout=30, what=f"{exp} CANCELLED")


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


# ----------------------------------------------------------------- tasks, CPUs, memory; LAUNCHER

def resources(**values: str) -> dict[str, str]:
    base = {"partition": "a100_multi", "gpu_type": "a100", "gpus": "0", "nodes": "1", "launcher": "none",
            "cpus": "2", "mem": "4G", "cpus_per_gpu": "", "mem_per_gpu": "", "time": "01:00:00"}
    return dict(base, **values)


@pytest.mark.parametrize(
    ("values", "layout"),
    [
        ({}, (1, "2", "4G")),                                                  # no GPU: CPUS, MEM
        ({"gpus": "4"}, (1, "2", "4G")),                                       # nothing per GPU set
        ({"gpus": "4", "cpus_per_gpu": "4", "mem_per_gpu": "32G"}, (1, "16", "128G")),  # one task has 4 GPUs
        ({"gpus": "4", "cpus_per_gpu": "4", "launcher": "srun"}, (4, "4", "4G")),  # one task per GPU
        ({"gpus": "2", "cpus_per_gpu": "3", "launcher": "torchrun"}, (1, "6", "4G")),  # one task per node
        ({"gpus": "0", "cpus_per_gpu": "4", "launcher": "srun"}, (1, "2", "4G")),  # no GPU: one task per node
        ({"gpus": "2", "mem_per_gpu": "8000"}, (1, "2", "16000")),             # megabytes stay megabytes
    ],
)
def test_task_layout_scales_cpus_and_memory_with_gpus(values, layout):
    slurmkit = module("slurmkit")
    assert slurmkit.task_layout(resources(**values)) == layout


def test_resource_options_of_a_two_node_srun_job():
    slurmkit = module("slurmkit")
    options = slurmkit.resource_options(resources(gpus="2", nodes="2", launcher="srun", cpus_per_gpu="1",
                                                  mem_per_gpu="2G"))
    assert options[:2] == ["--partition=a100_multi", "--nodes=2"]
    assert {"--cpus-per-task=1", "--mem=4G", "--ntasks-per-node=2", "--gres=gpu:a100:2"} <= set(options)
    assert not any(o.startswith("--ntasks") for o in slurmkit.resource_options(resources(gpus="2")))  # as before


def test_launch_lines_of_srun_and_torchrun():
    slurmkit = module("slurmkit")
    two_nodes = resources(gpus="4", nodes="2", cpus_per_gpu="4")
    assert slurmkit.launch_argv(two_nodes, "123", "gm001", 15123) == []
    srun = slurmkit.launch_argv(dict(two_nodes, launcher="srun"), "123", "gm001", 15123)
    assert srun == ["srun", "--kill-on-bad-exit=1", "--nodes=2", "--ntasks-per-node=4",
                    "bash", "expflow_runtime/rank-env.sh"]
    on_nodes, inner = slurmkit.launch_parts(dict(two_nodes, launcher="torchrun"), "123", "gm001", 15123)
    assert on_nodes == ["srun", "--kill-on-bad-exit=1", "--nodes=2", "--ntasks-per-node=1"]
    assert inner == ["torchrun", "--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d",
                     "--rdzv-endpoint=gm001:15123", "--rdzv-id=123", "--no-python"]
    assert [slurmkit.master_port(j) for j in ("123", "15123", "44_3", "")] == [15123, 15123, 15044, 15000]


def test_dry_run_shows_the_launch_line_and_bad_launchers_are_refused(bake):
    project = bake(backend="slurm", partition="cs")
    make(project, "new", "EXP=d", env=LOCAL)
    out = make(project, "train", "EXP=d", "DRY_RUN=1", "LAUNCHER=torchrun", "NODES=2", "GPUS=4",
               "CPUS_PER_GPU=4", env={"BACKEND": "slurm"}).stdout
    assert "--nodes=2 " in out and "--cpus-per-task=16 " in out and "--ntasks-per-node=1 " in out
    assert "EXPFLOW_LAUNCHER=torchrun" in out
    assert ("  srun --kill-on-bad-exit=1 --nodes=2 --ntasks-per-node=1 torchrun --nnodes=2 --nproc-per-node=4 "
            "--rdzv-backend=c10d --rdzv-endpoint=$MASTER_ADDR:$MASTER_PORT --rdzv-id=$SLURM_JOB_ID --no-python "
            "<command>\n") in out
    bad = make(project, "train", "EXP=d", "LAUNCHER=mpirun", check=False, env={"BACKEND": "slurm"})
    assert bad.returncode != 0 and "LAUNCHER='mpirun' is not none, srun" in bad.stderr


# ----------------------------------------------------------------- on the cluster: preemption, many nodes

@pytest.mark.slurm
def test_preempted_job_saves_requeues_and_completes_from_its_checkpoint(project, alice_dir):
    """A job on the preemptible partition fills its node; a job of the priority
    partition (same node, higher PriorityTier) preempts it. SLURM requeues it
    (PreemptMode=REQUEUE); the program saved on SIGTERM, and the second run
    resumes and completes with every epoch once."""
    alice_make(project, "new", "EXP=pre", "PARTITION=preemptible", "CPUS=8",
               "SET=training.seconds_per_epoch=2 training.epochs=15")
    job_id = training_job(project, "pre", partition="preemptible")
    urgent = ""
    try:
        urgent = subprocess.run(
            ["runuser", "-u", USER, "--", "sbatch", "--parsable", "--partition=priority", "--cpus-per-task=2",
             f"--chdir={alice_dir}", "--output=/dev/null", "--wrap=sleep 5"],
            capture_output=True, text=True, check=True).stdout.strip()
        row = wait_for(lambda: (r := status_rows(project, user=USER)[("pre", "train")])["STATE"].startswith(
            "PENDING") and r, timeout=60, what="the preempted job to be requeued")
        assert row["STATE"] == "PENDING (restart 1, after PREEMPTED)"
        release_requeue_hold(job_id)
        row = wait_for(lambda: (r := status_rows(project, user=USER)[("pre", "train")])["STATE"].startswith(
            ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")) and r, timeout=180, what="the job to end")
        assert row["STATE"] == "COMPLETED (restart 1)"  # from its own record: the job has ended
        assert epochs_of(project, "pre") == list(range(15))
        log = (project / f"experiments/pre/logs/train-{job_id}.out").read_text()
        assert "DUE TO PREEMPTION" in log and "saved at epoch" in log and "resuming at epoch" in log
        assert log.count("===== expflow: train of pre") == 2 and run_states(project, "pre")[-1] == "COMPLETED"
    finally:
        subprocess.run(["scancel", job_id, *filter(None, [urgent])], capture_output=True)


RANKS_PY = '''\
"""Each task of a LAUNCHER=srun job: records what it was told, and the ranks
talk through MASTER_ADDR:MASTER_PORT (rank 0 listens, the others connect). The
first run then waits to be asked to save (SIGUSR1 or the stop file)."""
import json, os, signal, socket, sys, time

stopped = []
signal.signal(signal.SIGUSR1, lambda signum, frame: stopped.append("signal"))
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
address, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
heard = []
if rank == 0:
    server = socket.create_server(("", port))
    server.settimeout(60)
    for _ in range(world - 1):
        connection, _ = server.accept()
        with connection:
            heard.append(int(connection.recv(16).decode()))
            connection.sendall(b"hello from rank 0")
    server.close()
else:
    deadline = time.time() + 60
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as connection:
                connection.sendall(str(rank).encode())
                heard.append(connection.recv(64).decode())
                break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
         "SLURMD_NODENAME", "EXPFLOW_RESTART", "EXPFLOW_RESUME")
record = dict({name: os.environ.get(name) for name in names}, heard=sorted(heard))
if os.environ["EXPFLOW_RESTART"] == "0":
    while not stopped and not os.path.exists(os.environ["EXPFLOW_STOP_FILE"]):
        time.sleep(0.2)
    record["stopped_by"] = (stopped or ["file"])[0]
folder = os.path.join(os.environ["EXPFLOW_EXP_DIR"], "ranks")
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "restart{}-rank{}.json".format(os.environ["EXPFLOW_RESTART"], rank)), "w") as f:
    json.dump(record, f)
if rank == 0 and os.environ["EXPFLOW_RESTART"] != "0":
    with open(os.environ["EXPFLOW_RESULTS"], "w") as f:
        json.dump({"world_size": world}, f)
'''


@pytest.mark.slurm
def test_two_node_srun_job_starts_four_ranks_that_talk_and_requeues_as_one(project):
    """NODES=2 GPUS=2 LAUNCHER=srun on a100_multi: four tasks, two per node, each
    with its RANK, LOCAL_RANK, WORLD_SIZE and the job's MASTER_ADDR/MASTER_PORT;
    they exchange a message through it. Told its time is up (the signal SLURM
    sends GRACE seconds before the limit), the job saves on both nodes, requeues
    itself and runs again on both."""
    (project / "ranks.py").write_text(RANKS_PY)
    script = project / "scripts/train.sbatch"
    script.write_text(script.read_text().replace("python3 train.py", "python3 ranks.py"))
    alice_make(project, "new", "EXP=mn", "PARTITION=a100_multi", "GPU_TYPE=a100", "GPUS=2", "NODES=2",
               "LAUNCHER=srun", "CPUS_PER_GPU=1")
    alice_make(project, "train", "EXP=mn")
    job_id = metadata(project, "mn")["jobs"][0]["job_id"]
    ranks = project / "experiments/mn/ranks"
    try:
        wait_for(lambda: status_rows(project, user=USER)[("mn", "train")]["STATE"] == "RUNNING", what="RUNNING")
        log = project / f"experiments/mn/logs/train-{job_id}.out"
        wait_for(lambda: "expflow: launching with srun" in log.read_text(), what="the launch")
        time.sleep(3)  # the ranks have met
        subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True)
        wait_for(lambda: len(list(ranks.glob("restart0-*.json"))) == 4, timeout=60, what="four ranks saved")
        release_requeue_hold_when_pending(project, "mn", job_id)
        row = wait_for(lambda: (r := status_rows(project, user=USER)[("mn", "train")])["STATE"].startswith(
            ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")) and r, timeout=180, what="the job to end")
        assert row["STATE"] == "COMPLETED (restart 1)", row  # a requeue of its own is no event to show
        port = str(15000 + int(job_id) % 15000)
        for restart in ("0", "1"):
            records = [json.loads((ranks / f"restart{restart}-rank{rank}.json").read_text()) for rank in range(4)]
            assert [(r["RANK"], r["WORLD_SIZE"], r["LOCAL_WORLD_SIZE"]) for r in records] == [
                (str(rank), "4", "2") for rank in range(4)]
            assert {(r["SLURMD_NODENAME"], r["LOCAL_RANK"], r["NODE_RANK"]) for r in records} == {
                ("gm001", "0", "0"), ("gm001", "1", "0"), ("gm002", "0", "1"), ("gm002", "1", "1")}
            assert {(r["MASTER_ADDR"], r["MASTER_PORT"], r["EXPFLOW_RESTART"]) for r in records} == {
                ("gm001", port, restart)}
            assert records[0]["heard"] == [1, 2, 3] and all(r["heard"] == ["hello from rank 0"] for r in records[1:])
        first = [json.loads((ranks / f"restart0-rank{rank}.json").read_text()) for rank in range(4)]
        assert {r["stopped_by"] for r in first} == {"signal"}  # srun passed SIGUSR1 on to every task
        assert run_states(project, "mn") == ["REQUEUED", "COMPLETED"]
    finally:
        subprocess.run(["scancel", job_id], capture_output=True)


def release_requeue_hold_when_pending(project: Path, exp: str, job_id: str) -> None:
    wait_for(lambda: status_rows(project, user=USER)[(exp, "train")]["STATE"].startswith("PENDING (restart"),
             timeout=60, what="the requeued job to pend")
    release_requeue_hold(job_id)
