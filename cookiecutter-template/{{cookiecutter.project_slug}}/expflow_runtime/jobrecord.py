# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""What a job records about itself, from expflow_runtime/job-lib.sh:

    run.py job-record start                 before the environment is set up
    run.py job-record environment           after it: packages, modules, GPUs
    run.py job-record finish CODE [SIGNAL]  from the EXIT trap
    run.py job-id                           the id the job records itself under
    run.py job-launch                       how LAUNCHER starts the program

Each writes EXP_DIR/runs/STAGE-JOB.json (temp file + rename); the package list
goes beside it as STAGE-JOB.packages.txt. Everything it needs comes from
EXPFLOW_* and SLURM_* variables, so the same code runs under SLURM and on the
local backend. Standard library only, Python 3.6+.
"""

import os
import shutil
import sys
import time

from . import files, slurmkit


def parse_nvidia_smi(text):
    """`nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader`
    -> [{"name", "driver", "memory"}], one per GPU the job can see."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3 and fields[0]:
            gpus.append({"name": fields[0], "driver": fields[1], "memory": fields[2]})
    return gpus


NVIDIA_SMI_ARGV = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]


def gpu_inventory():
    if not shutil.which("nvidia-smi"):
        return []
    result = slurmkit.run_command(NVIDIA_SMI_ARGV, timeout=30)
    return parse_nvidia_smi(result.stdout) if result.ok else []


def allocated_gpus(env):
    """{"type", "count"} of the GPUs SLURM allocated to this job (its TRES), or {}."""
    if not env.get("SLURM_JOB_ID"):
        return {}
    result = slurmkit.run_command(slurmkit.scontrol_job_argv(env["SLURM_JOB_ID"]), timeout=30)
    if not result.ok:
        return {}
    gpu_type, count = slurmkit.gpus_from_tres(slurmkit.allocated_tres(slurmkit.parse_scontrol_job(result.stdout)))
    return {"type": gpu_type, "count": count} if count else {}


def package_list(env):
    """(tool, text): `conda list --export` inside a conda env, else `pip freeze`."""
    if env.get("CONDA_PREFIX") and shutil.which("conda"):
        result = slurmkit.run_command(["conda", "list", "--export"], timeout=120)
        if result.ok:
            return "conda list --export", result.stdout
    result = slurmkit.run_command([sys.executable, "-m", "pip", "freeze", "--all"], timeout=120)
    if result.ok:
        return "pip freeze", result.stdout
    return "", ""


def record_path(env):
    return files.run_record_path(env["EXPFLOW_EXP_DIR"], env["EXPFLOW_STAGE"], env["EXPFLOW_JOB_ID"],
                                 env.get("EXPFLOW_RESTART") or 0)


def write_record(env, record):
    files.write_experiment_json(env["EXPFLOW_EXP_DIR"], record_path(env), record)


def read_record(env):
    record, _ = files.read_json(record_path(env))
    if isinstance(record, dict):
        return record
    return {"stage": env["EXPFLOW_STAGE"], "job_id": env["EXPFLOW_JOB_ID"]}


def wait_for_dependency(env):
    """Local backend: block until the run named by EXPFLOW_AFTER_RUN completes.
    Returns "" to go on, or why the dependency can never be satisfied."""
    path, pid = env.get("EXPFLOW_AFTER_RUN", ""), env.get("EXPFLOW_AFTER_PID", "")
    while path:
        record, _ = files.read_json(path)
        ended = (record or {}).get("state", "")
        if ended == "COMPLETED":
            return ""
        if ended in slurmkit.FINAL_STATES:
            return "dependency {} ended {}".format(os.path.basename(path), ended)
        if pid and not files.pid_alive(int(pid)) and ended != "RUNNING":
            return "dependency process {} ended without a record".format(pid)
        time.sleep(1)
    return ""


def start(env):
    blocked = wait_for_dependency(env)
    record = {
        "stage": env["EXPFLOW_STAGE"], "job_id": env["EXPFLOW_JOB_ID"], "state": "RUNNING",
        "started": files.now_iso(), "attempt": int(env.get("EXPFLOW_ATTEMPT") or 1),
        "restart": int(env.get("EXPFLOW_RESTART") or 0),
        "node": env.get("SLURMD_NODENAME") or files.hostname(), "host": files.hostname(),
        "nodelist": env.get("SLURM_JOB_NODELIST", ""), "pid": os.getppid(),
        "partition": env.get("SLURM_JOB_PARTITION", ""), "account": env.get("SLURM_JOB_ACCOUNT", ""),
        "cluster": env.get("SLURM_CLUSTER_NAME", ""),
        "array_job_id": env.get("SLURM_ARRAY_JOB_ID", ""), "array_task_id": env.get("SLURM_ARRAY_TASK_ID", ""),
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES", ""),
        "allocated_gpus": allocated_gpus(env),
    }
    if blocked:
        record.update(state="CANCELLED", ended=files.now_iso(), reason=blocked)
        write_record(env, record)
        print("expflow: not running: " + blocked, file=sys.stderr)
        return 1
    write_record(env, record)
    return 0


def environment(env):
    """After the job's environment is set up: what the code will run with."""
    record = read_record(env)
    tool, packages = package_list(env)
    if tool:
        packages_path = record_path(env)[: -len(".json")] + ".packages.txt"
        files.write_text_atomic(packages_path, packages)
        record["packages"] = {"tool": tool, "file": os.path.relpath(packages_path, env["EXPFLOW_EXP_DIR"])}
    record.update(
        python=sys.version.split()[0], python_executable=sys.executable,
        modules=[m for m in env.get("LOADEDMODULES", "").split(":") if m],
        conda_env=env.get("CONDA_DEFAULT_ENV", ""), virtualenv=env.get("VIRTUAL_ENV", ""),
        container=env.get("ENV_CONTAINER", ""), gpus=gpu_inventory(),
    )
    write_record(env, record)
    return 0


# how job-lib.sh says a run ended other than by the program's exit code
ENDED_BY = {"REQUEUE": "REQUEUED", "TIMEOUT": "TIMEOUT"}


def finish(env, code, killed_by):
    record = read_record(env)
    if record.get("state") in slurmkit.FINAL_STATES:
        return 0  # already final (a dependency that was never satisfied)
    state = ENDED_BY.get(killed_by) or ("COMPLETED" if code == 0 else ("CANCELLED" if killed_by else "FAILED"))
    record.update(state=state, exit_code=code, ended=files.now_iso())
    if killed_by and killed_by not in ENDED_BY:
        record["signal"] = killed_by
    write_record(env, record)
    return 0


USAGE = "usage: run.py job-record start | environment | finish CODE [SIGNAL]"


def job_record(argv, env):
    """run.py job-record ...: the job's own record, at its three moments."""
    if argv[:1] == ["start"]:
        return start(env)
    if argv[:1] == ["environment"]:
        return environment(env)
    if argv[:1] == ["finish"] and len(argv) in (2, 3):
        return finish(env, int(argv[1]), argv[2] if len(argv) == 3 else "")
    print(USAGE, file=sys.stderr)
    return 2


def job_seconds(argv, env):
    """run.py job-seconds TIME: a SLURM time in seconds (the local backend's timer)."""
    print(slurmkit.time_to_seconds(argv[0]) if argv else 0)
    return 0


def job_id(argv, env):
    """run.py job-id: the id this job records itself under (files.job_id_from_env)."""
    print(files.job_id_from_env(env))
    return 0


def first_node(env):
    """The job's first node (MASTER_ADDR), as `scontrol show hostnames` lists them."""
    nodelist = env.get("SLURM_JOB_NODELIST", "")
    if nodelist:
        result = slurmkit.run_command(slurmkit.hostnames_argv(nodelist))
        names = result.stdout.split() if result.ok else []
        if names:
            return names[0]
    return env.get("SLURMD_NODENAME") or files.hostname()


def job_launch(argv, env):
    """run.py job-launch: for job-lib.sh, NUL-terminated records "env:NAME=VALUE"
    (MASTER_ADDR, MASTER_PORT), "srun:ARG" and "inner:ARG" (slurmkit.launch_parts)."""
    resources = {"launcher": env.get("EXPFLOW_LAUNCHER", ""), "nodes": env.get("EXPFLOW_NODES", ""),
                 "gpus": env.get("EXPFLOW_GPUS", "")}
    job_id = env.get("SLURM_JOB_ID", "")
    address, port = first_node(env), slurmkit.master_port(job_id)
    on_nodes, inner = slurmkit.launch_parts(resources, job_id, address, port)
    records = ["env:MASTER_ADDR=" + address, "env:MASTER_PORT={}".format(port)]
    records += ["srun:" + arg for arg in on_nodes] + ["inner:" + arg for arg in inner]
    sys.stdout.write("".join(record + "\0" for record in records))
    return 0
