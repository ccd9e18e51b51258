#!/usr/bin/env python3
"""Create, submit and cancel experiments; record what a job did.

Called by the Makefile (make new / train / eval / cancel) and by the job
scripts (record start / record finish). Standard library only, Python 3.6+,
run as `python3 -I`. Values come from the environment, which is where make
puts command-line variables (make train EXP=001 GPUS=2), so no user-supplied
string ever passes through a shell.
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out

import projectlib as pl  # noqa: E402
import slurmkit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("train", "eval")


# ----------------------------------------------------------------- creating

def create_experiment(root, exp_id, config_path, settings):
    """Make experiments/<exp_id> from config_path; never touches an existing one.

    Everything is written into a hidden temp directory first and renamed into
    place, so an interrupted call leaves no half-made experiment. Checkpoints
    live under SCRATCH_ROOT/<project>/checkpoints/<id> when a scratch root is
    set (big, purgeable files), linked from the experiment as checkpoints/.
    """
    target = pl.experiment_dir(root, exp_id)
    if os.path.lexists(target):
        raise pl.ProjectError("experiment {} already exists; nothing changed".format(exp_id))
    if not os.path.isfile(config_path):
        raise pl.ProjectError("config {} not found".format(config_path))
    config = pl.load_yaml(config_path)
    if not isinstance(config, dict):
        raise pl.ProjectError("config {} must be a mapping of keys to values".format(config_path))
    os.makedirs(pl.experiments_dir(root), exist_ok=True)
    staging = os.path.join(pl.experiments_dir(root), ".new-{}-{}".format(exp_id, uuid.uuid4().hex[:8]))
    try:
        for sub in ("logs", "runs"):
            os.makedirs(os.path.join(staging, sub))
        link_checkpoints(staging, settings, exp_id)
        shutil.copyfile(config_path, os.path.join(staging, "config.yaml"))
        pl.write_json_atomic(os.path.join(staging, "config.json"), config)
        pl.write_json_atomic(os.path.join(staging, "metadata.json"), {
            "id": exp_id,
            "created": pl.now_iso(),
            "config_source": os.path.relpath(config_path, root),
            "jobs": [],
        })
        os.rename(staging, target)  # fails if target appeared meanwhile: nothing overwritten
    except pl.ProjectError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise pl.ProjectError("could not create experiment {}: {}".format(exp_id, exc)) from None
    return target


def link_checkpoints(exp_path, settings, exp_id):
    scratch = settings.get("SCRATCH_ROOT", "")
    if not scratch:
        os.makedirs(os.path.join(exp_path, "checkpoints"))
        return
    project = settings.get("PROJECT_NAME") or os.path.basename(ROOT)
    target = os.path.join(scratch, project, "checkpoints", exp_id)
    if os.path.lexists(target) and (not os.path.isdir(target) or os.listdir(target)):
        # left by an earlier experiment of the same id: a new one must not resume from it
        raise pl.ProjectError("{} already holds checkpoints; remove it or choose another id".format(target))
    os.makedirs(target, exist_ok=True)
    os.symlink(target, os.path.join(exp_path, "checkpoints"))


def snapshot_config_json(exp_path):
    """config.json follows config.yaml, which people edit between new and train."""
    config = pl.load_yaml(os.path.join(exp_path, "config.yaml"))
    if not isinstance(config, dict):
        raise pl.ProjectError("{}/config.yaml must be a mapping of keys to values".format(exp_path))
    pl.write_json_atomic(os.path.join(exp_path, "config.json"), config)


def cmd_new(env):
    exp_id = pl.check_experiment_id(env.get("EXP", ""))
    config = os.path.join(ROOT, env.get("CONFIG") or os.path.join("configs", "default.yaml"))
    create_experiment(ROOT, exp_id, config, pl.read_settings(ROOT))
    print("[OK] created experiment {} from {}".format(exp_id, os.path.relpath(config, ROOT)))
    return 0


# ----------------------------------------------------------------- resources and backend

def resolve_resources(settings, env):
    """Settings, then command-line overrides, each validated for sbatch."""
    merged = pl.setting_overrides(settings, env, pl.RESOURCE_KEYS)
    resources = {}
    for key in pl.RESOURCE_KEYS:
        try:
            resources[key.lower()] = slurmkit.check_option(key.lower(), merged.get(key, ""))
        except ValueError as exc:
            raise pl.ProjectError(str(exc)) from None
    if not int(resources["gpus"] or 0):
        resources["gpu_type"] = ""  # GPUS=0 asks for no GPU, whatever type settings.env names
    return resources


def resolve_backend(settings, env):
    """(backend, why): BACKEND=auto picks slurm when sbatch is on PATH."""
    choice = (env.get("BACKEND") or settings.get("BACKEND") or "auto").lower()
    if choice not in ("auto", "slurm", "local"):
        raise pl.ProjectError("BACKEND={!r} is not one of auto, slurm, local".format(choice))
    if choice != "auto":
        return choice, "BACKEND={}".format(choice)
    if shutil.which("sbatch"):
        return "slurm", "auto: sbatch found"
    return "local", "auto: no sbatch on PATH, running here"


def sbatch_argv(stage, exp_id, exp_path, resources, after_job):
    """The full sbatch command line for one stage of one experiment."""
    argv = ["sbatch", "--parsable",
            "--job-name={}-{}".format(exp_id, stage),
            "--output={}".format(os.path.join(exp_path, "logs", stage + "-%j.out")),
            "--chdir={}".format(ROOT)]
    for key, flag in (("partition", "--partition"), ("account", "--account"), ("time", "--time"),
                      ("nodes", "--nodes"), ("cpus", "--cpus-per-task"), ("mem", "--mem")):
        if resources[key]:
            argv.append("{}={}".format(flag, resources[key]))
    gres = slurmkit.gpu_request(resources["gpu_type"], resources["gpus"])
    if gres:
        argv.append("--gres=" + gres)
    if after_job:
        argv.append("--dependency=afterok:" + after_job)
    argv += [os.path.join("scripts", stage + ".sbatch"), exp_path]
    return argv


# ----------------------------------------------------------------- submitting

def eval_dependency(exp_path, metadata, exp_id):
    """The train job that eval must wait for, or None when train completed."""
    train = pl.latest_job(metadata, "train")
    if train is None:
        raise pl.ProjectError("experiment {} has no train job yet: run make train EXP={} first".format(exp_id, exp_id))
    record, _ = pl.read_json(run_record_path(exp_path, "train", train["job_id"]))
    state = (record or {}).get("state", "")
    if state == "COMPLETED":
        return None
    if state in slurmkit.FINAL_STATES:
        raise pl.ProjectError("train job {} of {} ended {} (exit {}): eval not submitted".format(
            train["job_id"], exp_id, state, record.get("exit_code")))
    return train


def submit_slurm(argv):
    result = slurmkit.run_command(argv, timeout=60)
    if not result.ok:
        reason = slurmkit.sbatch_rejection_reason(result.stderr) if result.returncode else result.error
        raise pl.ProjectError("SLURM rejected the job: {}".format(reason))
    try:
        return slurmkit.parse_sbatch_parsable(result.stdout)
    except ValueError as exc:
        raise pl.ProjectError(str(exc)) from None


def start_local(stage, exp_path, after):
    """Run the stage's sbatch script with bash, detached, like a batch job."""
    job_id = "local-" + uuid.uuid4().hex[:8]
    env = dict(os.environ, EXPFLOW_LOCAL_JOB_ID=job_id)
    if after:
        env["EXPFLOW_AFTER_RUN"] = run_record_path(exp_path, after["stage"], after["job_id"])
        env["EXPFLOW_AFTER_PID"] = str(after.get("pid", ""))
    log_path = os.path.join(exp_path, "logs", "{}-{}.out".format(stage, job_id))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["bash", os.path.join("scripts", stage + ".sbatch"), exp_path],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives make, and cancel can signal the whole group
        )
    return job_id, proc.pid


def cmd_submit(env, stage):
    exp_id = pl.check_experiment_id(env.get("EXP", ""))
    exp_path = pl.experiment_dir(ROOT, exp_id)
    settings = pl.read_settings(ROOT)
    resources = resolve_resources(settings, env)
    backend, why = resolve_backend(settings, env)
    dry_run = env.get("DRY_RUN", "") not in ("", "0")
    if not os.path.isdir(exp_path):
        if stage != "train":
            raise pl.ProjectError("no experiment {}: run make train EXP={} first".format(exp_id, exp_id))
        if dry_run:
            print("DRY_RUN: would create experiment {} from configs/default.yaml".format(exp_id))
        else:
            create_experiment(ROOT, exp_id, os.path.join(ROOT, "configs", "default.yaml"), settings)
            print("[OK] created experiment {} from configs/default.yaml".format(exp_id))
    metadata = read_metadata(exp_path) if os.path.isdir(exp_path) else {"jobs": []}
    previous = pl.latest_job(metadata, stage)
    if previous and env.get("RESUBMIT", "") in ("", "0"):
        raise pl.ProjectError("experiment {} already has a {} job ({}); add RESUBMIT=1 to submit another".format(
            exp_id, stage, previous["job_id"]))
    after = eval_dependency(exp_path, metadata, exp_id) if stage == "eval" else None
    job = {"stage": stage, "backend": backend, "submitted": pl.now_iso(), "resources": resources}
    if not dry_run:
        snapshot_config_json(exp_path)
    if backend == "slurm":
        if after and after.get("backend") != "slurm":
            raise pl.ProjectError(
                "train of {} still runs on the local backend; submit eval when it ends".format(exp_id))
        argv = sbatch_argv(stage, exp_id, exp_path, resources, after and after["job_id"])
        if dry_run:
            return print_dry_run(argv, stage)
        job["job_id"] = submit_slurm(argv)
        job["sbatch"] = argv
    else:
        if dry_run:
            return print_dry_run(["bash", os.path.join("scripts", stage + ".sbatch"), exp_path], stage)
        job["job_id"], job["pid"] = start_local(stage, exp_path, after)
        job["host"] = socket.gethostname()
    job["log"] = os.path.join("logs", "{}-{}.out".format(stage, job["job_id"]))
    metadata["jobs"].append(job)
    pl.write_json_atomic(os.path.join(exp_path, "metadata.json"), metadata)
    waiting = " after train job {}".format(after["job_id"]) if after else ""
    print("[OK] submitted {} job {} for {} ({}; {}){}".format(
        stage, job["job_id"], exp_id, why, describe_resources(resources, backend), waiting))
    return 0


def print_dry_run(argv, stage):
    print("DRY_RUN: nothing submitted. Command:")
    print("  " + " ".join(shlex.quote(arg) for arg in argv))
    print("DRY_RUN: script scripts/{}.sbatch:".format(stage))
    with open(os.path.join(ROOT, "scripts", stage + ".sbatch")) as handle:
        sys.stdout.write(handle.read())
    return 0


def describe_resources(resources, backend):
    if backend == "local":
        return "local"
    parts = [resources["partition"] or "default partition"]
    if resources["gpus"] and int(resources["gpus"]):
        parts.append("{}x {}".format(resources["gpus"], resources["gpu_type"] or "gpu"))
    if resources["time"]:
        parts.append(resources["time"])
    return ", ".join(parts)


def read_metadata(exp_path):
    metadata, problem = pl.read_json(os.path.join(exp_path, "metadata.json"))
    if not isinstance(metadata, dict):
        raise pl.ProjectError("cannot read {}/metadata.json: {}".format(exp_path, problem or "not a JSON object"))
    metadata.setdefault("jobs", [])
    return metadata


# ----------------------------------------------------------------- cancelling

def cmd_cancel(env):
    exp_id = pl.check_experiment_id(env.get("EXP", ""))
    exp_path = pl.experiment_dir(ROOT, exp_id)
    if not os.path.isdir(exp_path):
        raise pl.ProjectError("no experiment {}".format(exp_id))
    metadata = read_metadata(exp_path)
    records = pl.run_records(exp_path)
    live = [job for job in (pl.latest_job(metadata, s) for s in STAGES)
            if job and records.get((job["stage"], str(job["job_id"])), {}).get("state") not in slurmkit.FINAL_STATES]
    if not live:
        print("experiment {} has no job left to cancel".format(exp_id))
        return 0
    slurm_ids = [job["job_id"] for job in live if job["backend"] == "slurm"]
    if slurm_ids:
        result = slurmkit.run_command(["scancel"] + slurm_ids, timeout=30)
        if not result.ok:
            print("WARNING: " + slurmkit.describe_failure(result), file=sys.stderr)
    for job in live:
        if job["backend"] == "local":
            signal_local_job(job)
    print("[OK] cancel requested for {}: {}".format(exp_id, ", ".join(
        "{} job {}".format(job["stage"], job["job_id"]) for job in live)))
    return 0


def signal_local_job(job):
    try:
        os.killpg(int(job["pid"]), signal.SIGTERM)
    except (ProcessLookupError, PermissionError, KeyError, ValueError):
        pass  # already gone


# ----------------------------------------------------------------- the job's own record

def run_record_path(exp_path, stage, job_id):
    return os.path.join(exp_path, "runs", "{}-{}.json".format(stage, job_id))


def parse_nvidia_smi(text):
    """`nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader`
    -> [{"name", "driver", "memory"}]."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3 and fields[0]:
            gpus.append({"name": fields[0], "driver": fields[1], "memory": fields[2]})
    return gpus


def gpu_inventory():
    if not shutil.which("nvidia-smi"):
        return []
    result = slurmkit.run_command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                   "--format=csv,noheader"], timeout=20)
    return parse_nvidia_smi(result.stdout) if result.ok else []


def wait_for_dependency(env):
    """Local backend: block until the run named by EXPFLOW_AFTER_RUN completes.
    Returns "" to go on, or why the dependency can never be satisfied."""
    path, pid = env.get("EXPFLOW_AFTER_RUN", ""), env.get("EXPFLOW_AFTER_PID", "")
    while path:
        record, _ = pl.read_json(path)
        state = (record or {}).get("state", "")
        if state == "COMPLETED":
            return ""
        if state in slurmkit.FINAL_STATES:
            return "dependency {} ended {}".format(os.path.basename(path), state)
        if pid and not pid_alive(int(pid)) and state != "RUNNING":
            return "dependency process {} ended without a record".format(pid)
        time.sleep(1)
    return ""


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_record(env, event, args):
    """record start | record finish EXIT_CODE [SIGNAL], from scripts/job-lib.sh."""
    exp_path, stage, job_id = env["EXPFLOW_EXP_DIR"], env["EXPFLOW_STAGE"], env["EXPFLOW_JOB_ID"]
    path = run_record_path(exp_path, stage, job_id)
    if event == "start":
        blocked = wait_for_dependency(env)
        record = {
            "stage": stage, "job_id": job_id, "state": "RUNNING", "started": pl.now_iso(),
            "node": env.get("SLURMD_NODENAME") or socket.gethostname(), "host": socket.gethostname(),
            "pid": os.getppid(), "partition": env.get("SLURM_JOB_PARTITION", ""),
            "account": env.get("SLURM_JOB_ACCOUNT", ""), "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES", ""),
            "gpus": gpu_inventory(), "python": sys.version.split()[0],
        }
        if blocked:
            record.update(state="CANCELLED", ended=pl.now_iso(), reason=blocked)
            pl.write_json_atomic(path, record)
            print("expflow: not running: " + blocked, file=sys.stderr)
            return 1
        pl.write_json_atomic(path, record)
        return 0
    code = int(args[0]) if args else 1
    record, _ = pl.read_json(path)
    record = record if isinstance(record, dict) else {"stage": stage, "job_id": job_id}
    if record.get("state") in slurmkit.FINAL_STATES:
        return 0  # already final (e.g. dependency never satisfied)
    killed_by = args[1] if len(args) > 1 else ""
    state = "COMPLETED" if code == 0 else ("CANCELLED" if killed_by else "FAILED")
    record.update(state=state, exit_code=code, ended=pl.now_iso())
    if killed_by:
        record["signal"] = killed_by
    pl.write_json_atomic(path, record)
    return 0


# ----------------------------------------------------------------- entry point

USAGE = "usage: experiment.py new | train | eval | cancel | record start|finish CODE [SIGNAL]"


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    try:
        if command == "new":
            return cmd_new(env)
        if command in STAGES:
            return cmd_submit(env, command)
        if command == "cancel":
            return cmd_cancel(env)
        if command == "record" and args and args[0] in ("start", "finish"):
            return cmd_record(env, args[0], args[1:])
    except pl.ProjectError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
