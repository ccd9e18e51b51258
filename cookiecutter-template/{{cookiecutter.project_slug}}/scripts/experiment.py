#!/usr/bin/env python3
"""Create, submit, resume, cancel, archive and list experiments; show their logs.

Called by the Makefile. Standard library only, Python 3.6+, run as
`python3 -I`. Values come from the environment, which is where make puts
command-line variables (make train EXP=001 GPUS=2), so no user-supplied string
ever passes through a shell.
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out

import harvest  # noqa: E402
import projectlib as pl  # noqa: E402
import slurmkit  # noqa: E402
import tables  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("train", "eval")
RESUMABLE = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "LOST")
DEFAULT_CONFIG = os.path.join("configs", "default.yaml")


def flag(env, name):
    return env.get(name, "") not in ("", "0")


# ----------------------------------------------------------------- creating

def config_source(env):
    """(path, parent id or ""): FROM names an experiment or a config file."""
    source = env.get("FROM", "") or DEFAULT_CONFIG
    if pl.ID_PATTERN.match(source) and os.path.isdir(os.path.join(pl.experiments_dir(ROOT), source)):
        return os.path.join(pl.experiments_dir(ROOT), source, "config.yaml"), source
    path = os.path.join(ROOT, source)
    if not os.path.isfile(path):
        raise pl.ProjectError("FROM={}: no such experiment or config file".format(source))
    return path, ""


def create_experiment(exp_id, env, settings):
    """Make experiments/<exp_id> from FROM (or the default config), SET and the
    resource variables on the command line; never touches an existing one."""
    source, parent = config_source(env)
    config = pl.load_yaml(source)
    if not isinstance(config, dict):
        raise pl.ProjectError("config {} must be a mapping of keys to values".format(source))
    overrides = env.get("SET", "")
    if overrides:
        config = pl.apply_overrides(config, overrides, allow_new=flag(env, "SET_NEW"))
        text = "# {} with SET={}\n{}".format(os.path.relpath(source, ROOT), overrides, pl.dump_yaml_subset(config))
    else:
        with open(source) as handle:
            text = handle.read()  # the file itself, comments included
    own_resources = {key: env[key] for key in pl.RESOURCE_KEYS if key in env}
    write_experiment(exp_id, config, text, settings, own_resources, {
        "description": env.get("DESC", ""), "config_source": os.path.relpath(source, ROOT), "parent": parent,
        "overrides": overrides,
    })
    print("[OK] created experiment {} from {}{}".format(
        exp_id, os.path.relpath(source, ROOT), " with SET=" + overrides if overrides else ""))


def write_experiment(exp_id, config, config_text, settings, own_resources, metadata):
    """Write one experiment's directory. Everything goes into a hidden staging
    directory first and is renamed into place, so an interrupted call leaves no
    half-made experiment and an existing one is never overwritten."""
    target = pl.experiment_dir(ROOT, exp_id)
    if os.path.lexists(target):
        raise pl.ProjectError("experiment {} already exists; nothing changed".format(exp_id))
    resolve_resources(settings, own_resources, {})  # refuse bad values before writing anything
    os.makedirs(pl.experiments_dir(ROOT), exist_ok=True)
    staging = os.path.join(pl.experiments_dir(ROOT), ".new-{}-{}".format(exp_id, uuid.uuid4().hex[:8]))
    try:
        for sub in ("logs", "runs"):
            os.makedirs(os.path.join(staging, sub))
        link_checkpoints(staging, settings, exp_id)
        with open(os.path.join(staging, "config.yaml"), "w") as handle:
            handle.write(config_text)
        pl.write_json_atomic(os.path.join(staging, "config.json"), config)
        if own_resources:
            pl.write_settings(os.path.join(staging, pl.SETTINGS_FILE), own_resources)
        pl.write_json_atomic(os.path.join(staging, "metadata.json"),
                             dict(metadata, id=exp_id, created=pl.now_iso(), jobs=[]))
        os.rename(staging, target)  # fails if target appeared meanwhile: nothing overwritten
    except pl.ProjectError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise pl.ProjectError("could not create experiment {}: {}".format(exp_id, exc)) from None
    return target


def link_checkpoints(exp_path, settings, exp_id):
    """Checkpoints live under SCRATCH_ROOT/<project>/checkpoints/<id> when a scratch
    root is set (big, purgeable files), linked from the experiment."""
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


def cmd_new(env):
    create_experiment(pl.check_experiment_id(env.get("EXP", "")), env, pl.read_settings(ROOT))
    return 0


# ----------------------------------------------------------------- resources and backend

def resolve_resources(settings, own, env):
    """Project settings < the experiment's own settings < the command line; each
    value validated for sbatch."""
    merged = pl.setting_overrides(pl.setting_overrides(settings, own, pl.RESOURCE_KEYS), env, pl.RESOURCE_KEYS)
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


SBATCH_FLAGS = (("partition", "--partition"), ("account", "--account"), ("qos", "--qos"), ("time", "--time"),
                ("nodes", "--nodes"), ("cpus", "--cpus-per-task"), ("mem", "--mem"),
                ("constraint", "--constraint"), ("mail_type", "--mail-type"))


def resource_options(resources):
    """sbatch options for the resources that are set (--gres for GPUs)."""
    options = ["{}={}".format(option, resources[key]) for key, option in SBATCH_FLAGS if resources[key]]
    gres = slurmkit.gpu_request(resources["gpu_type"], resources["gpus"])
    return options + (["--gres=" + gres] if gres else [])


def sbatch_argv(stage, exp_id, exp_path, resources, after_job, job_env):
    """The full sbatch command line for one stage of one experiment."""
    argv = ["sbatch", "--parsable",
            "--job-name={}-{}".format(exp_id, stage),
            "--output={}".format(os.path.join(exp_path, "logs", stage + "-%j.out")),
            "--chdir={}".format(ROOT)]
    argv += resource_options(resources)
    if after_job:
        argv.append("--dependency=afterok:" + after_job)
    if job_env:
        argv.append("--export=ALL," + ",".join("{}={}".format(k, v) for k, v in sorted(job_env.items())))
    argv += [os.path.join("scripts", stage + ".sbatch"), exp_path]
    return argv


# ----------------------------------------------------------------- reproducibility records

def git_output(args):
    result = slurmkit.run_command(["git", "-C", ROOT] + args, timeout=30)
    return result.stdout if result.ok else None


def git_snapshot(exp_path, name):
    """Commit, branch, dirty flag; when dirty, the full diff against HEAD (staged
    and unstaged) as git/<name>.patch and the untracked files, so `git apply` on
    the commit gives back the code that was submitted."""
    if git_output(["rev-parse", "--show-toplevel"]) is None:
        return {"repository": False}
    commit = (git_output(["rev-parse", "HEAD"]) or "").strip()
    snapshot = {
        "repository": True, "commit": commit,
        "branch": (git_output(["rev-parse", "--abbrev-ref", "HEAD"]) or "").strip(),
        "dirty": bool((git_output(["status", "--porcelain"]) or "").strip()),
    }
    if snapshot["dirty"] and commit:
        patch = git_output(["diff", "HEAD", "--binary"]) or ""
        os.makedirs(os.path.join(exp_path, "git"), exist_ok=True)
        with open(os.path.join(exp_path, "git", name + ".patch"), "w") as handle:
            handle.write(patch)
        snapshot["patch"] = os.path.join("git", name + ".patch")
        snapshot["untracked"] = (git_output(["ls-files", "--others", "--exclude-standard"]) or "").split()
    return snapshot


def gpu_type_change(exp_id, metadata, stage, resources):
    """(reference gpu type, where it ran) that this submission would change, or None:
    eval and resume compare with the experiment's own training, the first training
    of a clone with its parent's."""
    reference, where = pl.latest_job(metadata, "train"), "its training"  # "... ran on l40s"
    if reference is None and metadata.get("parent"):
        parent = pl.experiment_dir(ROOT, metadata["parent"])
        parent_meta, _ = pl.read_json(os.path.join(parent, "metadata.json"))
        reference, where = pl.latest_job(parent_meta or {}, "train"), "its parent {}".format(metadata["parent"])
    if reference is None or reference.get("backend") != "slurm":
        return None
    before = reference.get("resources", {}).get("gpu_type", "")
    if before and before != resources["gpu_type"]:
        return {"from": before, "to": resources["gpu_type"] or "no GPU", "reference": where}
    return None


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


def run_record_path(exp_path, stage, job_id):
    return os.path.join(exp_path, "runs", "{}-{}.json".format(stage, job_id))


def submit_slurm(argv):
    result = slurmkit.run_command(argv, timeout=60)
    if not result.ok:
        reason = slurmkit.sbatch_rejection_reason(result.stderr) if result.returncode else result.error
        raise pl.ProjectError("SLURM rejected the job: {}".format(reason))
    try:
        return slurmkit.parse_sbatch_parsable(result.stdout)
    except ValueError as exc:
        raise pl.ProjectError(str(exc)) from None


def start_local(stage, exp_path, after, job_env):
    """Run the stage's sbatch script with bash, detached, like a batch job."""
    job_id = "local-" + uuid.uuid4().hex[:8]
    env = dict(os.environ, EXPFLOW_LOCAL_JOB_ID=job_id, **job_env)
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


def submit(exp_id, stage, env, settings, attempt=1):
    """Submit one stage of an existing experiment and record it in its metadata."""
    exp_path = pl.experiment_dir(ROOT, exp_id)
    metadata = read_metadata(exp_path)
    resources = resolve_resources(settings, pl.read_settings(exp_path, missing_ok=True), env)
    backend, why = resolve_backend(settings, env)
    after = eval_dependency(exp_path, metadata, exp_id) if stage == "eval" else None
    job_env = {"EXPFLOW_ATTEMPT": str(attempt), "EXPFLOW_RESUME": "1"} if attempt > 1 else {}
    job = {"stage": stage, "backend": backend, "submitted": pl.now_iso(), "resources": resources,
           "attempt": attempt}
    change = gpu_type_change(exp_id, metadata, stage, resources) if backend == "slurm" else None
    if backend == "slurm":
        if after and after.get("backend") != "slurm":
            raise pl.ProjectError(
                "train of {} still runs on the local backend; submit eval when it ends".format(exp_id))
        argv = sbatch_argv(stage, exp_id, exp_path, resources, after and after["job_id"], job_env)
        if flag(env, "DRY_RUN"):
            return print_dry_run(argv, stage)
        snapshot_config_json(exp_path)
        job["job_id"] = submit_slurm(argv)
        job["sbatch"] = argv
        if after:
            job["after"] = after["job_id"]
    else:
        if flag(env, "DRY_RUN"):
            return print_dry_run(["bash", os.path.join("scripts", stage + ".sbatch"), exp_path], stage)
        snapshot_config_json(exp_path)
        job["job_id"], job["pid"] = start_local(stage, exp_path, after, job_env)
        job["host"] = socket.gethostname()
    job["log"] = os.path.join("logs", "{}-{}.out".format(stage, job["job_id"]))
    job["git"] = git_snapshot(exp_path, "{}-{}".format(stage, job["job_id"]))
    if change:
        job["gpu_type_change"] = change
    metadata["jobs"].append(job)
    pl.write_json_atomic(os.path.join(exp_path, "metadata.json"), metadata)
    report_submission(exp_id, job, why, after, change)
    return 0


def report_submission(exp_id, job, why, after, change):
    waiting = " after train job {}".format(after["job_id"]) if after else ""
    print("[OK] submitted {} job {} for {} ({}; {}){}".format(
        job["stage"], job["job_id"], exp_id, why, describe_resources(job["resources"], job["backend"]), waiting))
    if job["git"].get("dirty"):
        print("WARNING: submitted from a dirty git tree; the diff is saved in experiments/{}/{}".format(
            exp_id, job["git"].get("patch", "(no commit yet)")), file=sys.stderr)
    if change:
        print("WARNING: {} job {} of {} runs on {}, {} ran on {}: results may differ across GPU types".format(
            job["stage"], job["job_id"], exp_id, change["to"], change["reference"], change["from"]), file=sys.stderr)


def snapshot_config_json(exp_path):
    """config.json follows config.yaml, which people edit between new and train."""
    config = pl.load_yaml(os.path.join(exp_path, "config.yaml"))
    if not isinstance(config, dict):
        raise pl.ProjectError("{}/config.yaml must be a mapping of keys to values".format(exp_path))
    pl.write_json_atomic(os.path.join(exp_path, "config.json"), config)


def cmd_submit(env, stage):
    if env.get("SWEEP") and stage == "eval":
        import sweep  # imported here: sweep.py builds on this module
        return sweep.cmd_eval(env)
    exp_id = pl.check_experiment_id(env.get("EXP", ""))
    settings = pl.read_settings(ROOT)
    if not os.path.isdir(pl.experiment_dir(ROOT, exp_id)):
        if stage != "train":
            raise pl.ProjectError("no experiment {}: run make train EXP={} first".format(exp_id, exp_id))
        if flag(env, "DRY_RUN"):
            raise pl.ProjectError("DRY_RUN needs an existing experiment: make new EXP={} first".format(exp_id))
        create_experiment(exp_id, env, settings)
    previous = pl.latest_job(read_metadata(pl.experiment_dir(ROOT, exp_id)), stage)
    if previous and not flag(env, "RESUBMIT"):
        raise pl.ProjectError("experiment {} already has a {} job ({}); add RESUBMIT=1 to submit another".format(
            exp_id, stage, previous["job_id"]))
    return submit(exp_id, stage, env, settings)


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


# ----------------------------------------------------------------- state of an experiment

def current_jobs(exp_id, settings, env):
    """{stage: merged job} for the newest job of each stage (one scheduler call)."""
    experiment = harvest.load_experiment(ROOT, exp_id)
    return {stage: job for _, stage, job in harvest.job_table([experiment], settings, env)}


def existing(env):
    exp_id = pl.check_experiment_id(env.get("EXP", ""))
    if not os.path.isdir(pl.experiment_dir(ROOT, exp_id)):
        raise pl.ProjectError("no experiment {}".format(exp_id))
    return exp_id


def cmd_resume(env):
    """Resubmit a failed, cancelled or timed-out training in place: same directory,
    same checkpoints, attempt n+1; the job sees EXPFLOW_RESUME=1."""
    exp_id = existing(env)
    settings = pl.read_settings(ROOT)
    train = current_jobs(exp_id, settings, env).get("train")
    if train is None:
        raise pl.ProjectError("experiment {} was never trained: make train EXP={}".format(exp_id, exp_id))
    if train["state"] not in RESUMABLE:
        raise pl.ProjectError("train job {} of {} is {}: only {} can be resumed".format(
            train["job_id"], exp_id, train["state"], ", ".join(RESUMABLE)))
    attempt = pl.latest_job(read_metadata(pl.experiment_dir(ROOT, exp_id)), "train").get("attempt", 1) + 1
    return submit(exp_id, "train", env, settings, attempt=attempt)


def cmd_cancel(env):
    if env.get("SWEEP"):
        import sweep  # imported here: sweep.py builds on this module
        return sweep.cmd_cancel(env)
    exp_id = existing(env)
    exp_path = pl.experiment_dir(ROOT, exp_id)
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
            stop_local_job(job)
    print("[OK] cancel requested for {}: {}".format(exp_id, ", ".join(
        "{} job {}".format(job["stage"], job["job_id"]) for job in live)))
    return 0


def stop_local_job(job):
    """SIGTERM to a local job's whole process group (its bash, its code, a sweep runner)."""
    try:
        os.killpg(int(job["pid"]), signal.SIGTERM)
    except (ProcessLookupError, PermissionError, KeyError, TypeError, ValueError):
        pass  # already gone


def cmd_archive(env):
    """Move an experiment out of the active set, into archive/; never deletes."""
    exp_id = existing(env)
    live = [j for j in current_jobs(exp_id, pl.read_settings(ROOT), env).values()
            if j["state"] not in slurmkit.FINAL_STATES and j["state"] not in ("UNKNOWN", "LOST")]
    if live:
        raise pl.ProjectError("experiment {} still has {} job {}: make cancel EXP={} first".format(
            exp_id, live[0]["state"], live[0]["job_id"], exp_id))
    target = os.path.join(ROOT, "archive", exp_id)
    if os.path.lexists(target):
        raise pl.ProjectError("archive/{} already exists; nothing moved".format(exp_id))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(pl.experiment_dir(ROOT, exp_id), target)
    print("[OK] archived {} -> archive/{}".format(exp_id, exp_id))
    return 0


def cmd_list(env):
    """Ids with the state of their newest job and their description."""
    settings = pl.read_settings(ROOT)
    experiments = harvest.load_all(ROOT, settings)
    latest = {}
    for exp, _stage, job in harvest.job_table(experiments, settings, env):
        latest[exp["id"]] = job["state"]  # eval follows train in job_table's order
    wanted = env.get("STATE", "").upper()
    rows = [[exp["id"], latest.get(exp["id"], "NEW"), exp["metadata"].get("description", "")] for exp in experiments]
    rows = [row for row in rows if not wanted or row[1] == wanted]
    sys.stdout.write(tables.plain_table(["EXP", "STATE", "DESCRIPTION"], rows, tables.terminal_width(env)))
    return 0


# ----------------------------------------------------------------- logs

def log_path(env):
    exp_id = existing(env)
    stage = env.get("STAGE") or "train"
    if stage not in STAGES:
        raise pl.ProjectError("STAGE={!r} is not one of {}".format(stage, ", ".join(STAGES)))
    exp_path = pl.experiment_dir(ROOT, exp_id)
    job = pl.latest_job(read_metadata(exp_path), stage)
    if job is None:
        raise pl.ProjectError("experiment {} has no {} job".format(exp_id, stage))
    return os.path.join(exp_path, job["log"]), job


def line_count(env):
    text = env.get("N") or "100"
    if not text.isdigit():
        raise pl.ProjectError("N={!r} is not a number of lines".format(text))
    return int(text)


def cmd_logs(env):
    path, job = log_path(env)
    lines = line_count(env)
    if not os.path.exists(path):
        print("{} job {} has not written its log yet ({})".format(job["stage"], job["job_id"], path))
        return 0
    with open(path, errors="replace") as handle:
        sys.stdout.writelines(handle.readlines()[-lines:] if lines else [])
    return 0


def cmd_tail(env):
    path, _ = log_path(env)
    sys.stdout.flush()
    os.execvp("tail", ["tail", "-n", str(line_count(env)), "-F", path])


# ----------------------------------------------------------------- entry point

COMMANDS = {
    "new": cmd_new, "train": lambda env: cmd_submit(env, "train"), "eval": lambda env: cmd_submit(env, "eval"),
    "resume": cmd_resume, "cancel": cmd_cancel, "archive": cmd_archive, "list": cmd_list,
    "logs": cmd_logs, "tail": cmd_tail,
}


def main(argv=None, env=None):
    return pl.run_command_table(COMMANDS, argv, env)


if __name__ == "__main__":
    sys.exit(main())
