# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Creating experiments and submitting their jobs: resources -> sbatch argv, the
one local launcher, job arrays and their index files, git snapshots, cancelling.

Standard library only, Python 3.6+.
"""

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

from . import configs, files, ledger, slurmkit, values

ROOT = files.ROOT


def sbatch_timeout():
    """Seconds sbatch may take (EXPFLOW_SBATCH_TIMEOUT, default 60): a busy
    controller answers late; past this the answer is unknown, not a refusal."""
    return float(os.environ.get("EXPFLOW_SBATCH_TIMEOUT") or 60)


# ----------------------------------------------------------------- creating an experiment

def write_experiment(exp_id, config, config_text, settings, own_resources, metadata):
    """Write one experiment's directory. Everything goes into a hidden staging
    directory first and is renamed into place, so an interrupted call leaves no
    half-made experiment and an existing one is never overwritten."""
    target = files.experiment_dir(ROOT, exp_id)
    if os.path.lexists(target):
        raise files.ProjectError("experiment {} already exists; nothing changed".format(exp_id))
    resolve_resources(settings, own_resources, {})  # refuse bad values before writing anything
    os.makedirs(files.experiments_dir(ROOT), exist_ok=True)
    staging = os.path.join(files.experiments_dir(ROOT), ".new-{}-{}".format(exp_id, ledger.new_token()))
    try:
        for sub in ("logs", "runs"):
            os.makedirs(os.path.join(staging, sub))
        link_checkpoints(staging, settings, exp_id)
        with open(os.path.join(staging, "config.yaml"), "w") as handle:
            handle.write(config_text)
        files.write_json_atomic(os.path.join(staging, "config.json"), config)
        if own_resources:
            files.write_settings(os.path.join(staging, files.SETTINGS_FILE), own_resources)
        files.write_json_atomic(os.path.join(staging, "metadata.json"),
                                dict(metadata, id=exp_id, created=files.now_iso(), jobs=[]))
        os.rename(staging, target)  # fails if target appeared meanwhile: nothing overwritten
    except files.ProjectError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise files.ProjectError("could not create experiment {} ({}): {}".format(
            exp_id, files.display_path(target), exc.strerror or exc)) from None
    return target


def remove_new_experiment(exp_path):
    """Take back an experiment this call created (its first submission was
    refused): the directory, and its checkpoint directory on scratch if empty."""
    checkpoints = os.path.join(exp_path, "checkpoints")
    target = os.path.realpath(checkpoints) if os.path.islink(checkpoints) else ""
    shutil.rmtree(exp_path)
    if target:
        with contextlib.suppress(OSError):
            os.rmdir(target)  # only when empty


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
        raise files.ProjectError("{} already holds checkpoints; remove it or choose another id".format(target))
    os.makedirs(target, exist_ok=True)
    os.symlink(target, os.path.join(exp_path, "checkpoints"))


def snapshot_config_json(exp_path):
    """config.json follows config.yaml, which people edit between new and train."""
    config = configs.load_yaml(os.path.join(exp_path, "config.yaml"))
    if not isinstance(config, dict):
        raise files.ProjectError("{}/config.yaml must be a mapping of keys to values".format(exp_path))
    files.write_json_atomic(os.path.join(exp_path, "config.json"), config)


# ----------------------------------------------------------------- resources and backend

def resolve_resources(settings, own, env):
    """Project settings < the experiment's own settings < the command line; each
    value validated for sbatch. Keys come back in lower case (gpu_type)."""
    keys = slurmkit.RESOURCE_KEYS
    merged = files.setting_overrides(files.setting_overrides(settings, own, keys), env, keys)
    resources = {}
    for key in keys:
        try:
            resources[key.lower()] = slurmkit.check_option(key.lower(), merged.get(key, ""))
        except ValueError as exc:
            raise files.ProjectError(str(exc)) from None
    if not int(resources["gpus"] or 0):
        resources["gpu_type"] = ""  # GPUS=0 asks for no GPU, whatever type settings.env names
    return resources


def resolve_backend(settings, env):
    """(backend, why): BACKEND=auto picks slurm when sbatch is on PATH (values.backend)."""
    return values.backend(settings, env)


def mail_warning(resources):
    """Mail asked for with no address to send it to: said, not guessed."""
    if resources.get("mail_type") and not resources.get("mail_user"):
        return ("MAIL_TYPE={} without MAIL_USER: SLURM mails your account on the cluster, which may be read "
                "nowhere; set MAIL_USER in settings.env".format(resources["mail_type"]))
    return ""


def describe(resources, backend):
    return "local" if backend == "local" else slurmkit.describe_request(resources)


def job_environment(attempt):
    """What a job is told about its attempt: after the first it resumes from its
    checkpoints. The one place that rule lives (single jobs and array tasks)."""
    return {"EXPFLOW_ATTEMPT": str(attempt), "EXPFLOW_RESUME": "1" if attempt > 1 else "0"}


def limits_environment(resources):
    """What job-lib.sh needs of the effective resources (this experiment's, this
    call's): the time limit (the local backend's timer), its grace and the
    restarts left to take, and how to launch the program on the job's nodes
    (docs/long-jobs.md)."""
    return {"EXPFLOW_TIME_LIMIT": resources.get("time", ""),
            "EXPFLOW_TIME_LIMIT_GRACE": resources.get("time_limit_grace", ""),
            "EXPFLOW_MAX_RESTARTS": resources.get("max_restarts", "") if slurmkit.requeues(resources) else "0",
            "EXPFLOW_LAUNCHER": slurmkit.launcher(resources),
            "EXPFLOW_NODES": resources.get("nodes", ""),
            "EXPFLOW_GPUS": resources.get("gpus", "")}


def exported(job_env):
    return "--export=ALL," + ",".join("{}={}".format(k, v) for k, v in sorted(job_env.items()))


def stage_script(stage):
    return os.path.join("scripts", stage + ".sbatch")


def sbatch_argv(stage, job_name, exp_path, resources, after_job, job_env):
    """The full sbatch command line for one stage of one experiment. Each run of
    a job SLURM starts again appends to its log (job-lib.sh marks where)."""
    argv = ["sbatch", "--parsable",
            "--job-name={}".format(job_name),
            "--output={}".format(os.path.join(exp_path, "logs", stage + "-%j.out")), "--open-mode=append",
            "--chdir={}".format(ROOT)]
    argv += slurmkit.resource_options(resources)
    if after_job:
        argv += dependency_options("afterok:" + after_job)
    if job_env:
        argv.append(exported(job_env))
    return argv + [stage_script(stage), exp_path]


def dependency_options(dependency):
    """sbatch options for a job that waits for another: SLURM ends it once the
    dependency can never be met (a failed training), instead of keeping it
    pending for ever."""
    return ["--dependency=" + dependency, "--kill-on-invalid-dep=yes"]


class NoAnswer(files.ProjectError):
    """sbatch did not answer in time: the job may or may not have been submitted."""


class Rejected(files.ProjectError):
    """sbatch answered with a refusal (SLURM's reason): nothing was submitted."""

    def __init__(self, reason):
        super().__init__("SLURM rejected the job: " + reason)
        self.reason = reason


def submit_slurm(argv):
    """Run sbatch, out of the terminal's reach (Ctrl-C must not cut a submission in
    half); the job id, a ProjectError with SLURM's reason, or NoAnswer."""
    timeout = sbatch_timeout()
    result = slurmkit.run_command(argv, timeout=timeout, own_session=True)
    if result.returncode is None and "timed out" in result.error:
        raise NoAnswer("sbatch did not answer within {:g} s; the job may have been submitted".format(timeout))
    if not result.ok:
        reason = slurmkit.sbatch_rejection_reason(result.stderr) if result.returncode else result.error
        raise Rejected(reason)
    try:
        return slurmkit.parse_sbatch_parsable(result.stdout)
    except ValueError as exc:
        raise files.ProjectError(str(exc)) from None


def launch_local(argv, env, log_path):
    """The local backend's one way to start a job: detached in its own session
    (it outlives make, and cancel signals its whole process group), its output
    appended to log_path (or discarded when None). Returns the Popen."""
    with open(log_path or os.devnull, "ab") as log:
        return subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, **env), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_local(stage, exp_path, after, job_env, job_id):
    """Run the stage's sbatch script with bash, detached, like a batch job; its pid."""
    env = dict(job_env, EXPFLOW_LOCAL_JOB_ID=job_id)
    if after:
        env["EXPFLOW_AFTER_RUN"] = files.run_record_path(exp_path, after["stage"], after["job_id"])
        env["EXPFLOW_AFTER_PID"] = str(after.get("pid", ""))
    # run the script as it is now, as sbatch runs its copy: bash reads a script
    # file while running it, so saving an edit in place would change a running job
    with open(os.path.join(ROOT, stage_script(stage))) as handle:
        script = handle.read()
    proc = launch_local(["bash", "-c", script, stage_script(stage), exp_path], env,
                        os.path.join(exp_path, files.log_name(stage, job_id)))
    return proc.pid


def submit_recorded(entries, launch, outcome_for=None):
    """Write each (exp_path, intent) down, launch once (sbatch, or local jobs),
    then write down each job: with Ctrl-C held meanwhile, so that it leaves no
    job or recorded ones. What is left unresolved (sbatch's answer lost, the
    disk full after sbatch) reconcile.py settles later. outcome_for(intent,
    launched) gives each entry's outcome (an array's task id); by default the
    launch's answer is every entry's. Returns the jobs (intent and outcome)."""
    with ledger.interrupts_deferred():
        written = [(exp_path, ledger.write_intent(exp_path, intent)) for exp_path, intent in entries]
        try:
            launched = launch()
        except NoAnswer as exc:
            raise files.ProjectError("{} ({}); make status will find it if it was".format(
                exc, written[0][1]["job_name"])) from None
        except files.ProjectError as exc:
            for exp_path, intent in written:
                ledger.write_outcome(exp_path, intent, "void", {"reason": str(exc)})
            raise
        jobs = []
        for exp_path, intent in written:
            outcome = outcome_for(intent, launched) if outcome_for else dict(launched)
            outcome.setdefault("job_id", intent.get("job_id", ""))
            outcome.update(submitted=files.now_iso(), log=ledger.log_of(intent, outcome["job_id"]))
            try:
                ledger.write_outcome(exp_path, intent, "job", outcome)
            except (OSError, files.ProjectError) as exc:
                raise files.ProjectError("job {} was submitted, but writing it down failed ({}): make status will "
                                         "record it once {} can be written".format(outcome["job_id"], exc, exp_path)
                                         ) from None
            jobs.append(dict(intent, **outcome))
    return jobs


def print_dry_run(argv, stage, resources):
    print("DRY_RUN: nothing submitted. Command:")
    print("  " + " ".join(shlex.quote(arg) for arg in argv))
    launch = slurmkit.launch_argv(resources, "$SLURM_JOB_ID", "$MASTER_ADDR", "$MASTER_PORT")
    if launch and argv[0] == "sbatch":
        print("DRY_RUN: LAUNCHER={} starts the stage's command as".format(slurmkit.launcher(resources)))
        print("  " + " ".join(launch) + " <command>")
        print("  (MASTER_ADDR: the job's first node; MASTER_PORT: {})".format(slurmkit.MASTER_PORT_RULE))
    print("DRY_RUN: script {}:".format(stage_script(stage)))
    with open(os.path.join(ROOT, stage_script(stage))) as handle:
        sys.stdout.write(handle.read())
    return 0


# ----------------------------------------------------------------- job arrays (sweeps)

ARRAY_TASK_SCRIPT = os.path.join("expflow_runtime", "sweep-task.sbatch")


def max_array_size(settings):
    """Tasks one array may hold: MaxArraySize (an index runs from 0 to MaxArraySize-1),
    as detected into settings.env, else asked of SLURM."""
    value = settings.get("MAX_ARRAY_SIZE", "")
    if values.is_count(value) and int(value) > 0:
        return int(value)
    result = slurmkit.run_command(slurmkit.SCONTROL_CONFIG_ARGV, timeout=15)
    found = slurmkit.parse_scontrol_config(result.stdout).get("MaxArraySize", "") if result.ok else ""
    if not values.is_count(found):
        raise files.ProjectError("MAX_ARRAY_SIZE is not set in settings.env and SLURM did not say its MaxArraySize")
    return int(found)


def write_index(directory, stage, tasks):
    """The index file a job array reads (expflow_runtime/sweep-task.sbatch, the one
    reader): line i+1 is task i: attempt, resume, experiment directory, and for the
    local backend the task's job id and log."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "{}-{}.index".format(stage, ledger.new_token()))
    lines = []
    for task in tasks:
        job_env = job_environment(task["attempt"])
        lines.append("\t".join((job_env["EXPFLOW_ATTEMPT"], job_env["EXPFLOW_RESUME"], task["exp_path"],
                                task.get("job_id", "-"), task.get("log", "-"))) + "\n")
    files.write_text_atomic(path, "".join(lines))
    return path


def array_argv(job_name, stage, index_path, count, resources, log_dir, parallel, dependency):
    """sbatch for one job array: task i runs line i+1 of index_path."""
    argv = ["sbatch", "--parsable", "--job-name={}".format(job_name), "--chdir={}".format(ROOT),
            "--output={}".format(os.path.join(log_dir, stage + "-%A_%a.out")), "--open-mode=append",
            "--array=0-{}{}".format(count - 1, "%" + parallel if parallel else "")]
    argv += slurmkit.resource_options(resources) + [exported(limits_environment(resources))]
    if dependency:
        argv += dependency_options(dependency)
    return argv + [ARRAY_TASK_SCRIPT, stage, index_path]


def start_local_array(stage, index_path, count, parallel, resources):
    """The local backend's job array: one detached runner (run.py run-local-array),
    at most `parallel` tasks at a time."""
    argv = [sys.executable, "-I", os.path.join(ROOT, "expflow_runtime", "run.py"), "run-local-array",
            stage, index_path, str(count), str(parallel)]
    proc = launch_local(argv, limits_environment(resources), None)
    return "local-array-{}".format(proc.pid), proc.pid


def run_local_array_command(argv, env):
    """run.py run-local-array STAGE INDEX COUNT PARALLEL (the detached runner)."""
    return run_local_array(*argv)


def run_local_array(stage, index_path, count, parallel):
    """Run tasks 0..count-1 of an index file through the same task script SLURM
    runs, at most `parallel` at once; each task writes its own log."""
    running = []
    for task in range(int(count)):
        while len(running) >= int(parallel):
            time.sleep(0.2)
            running = [proc for proc in running if proc.poll() is None]
        running.append(subprocess.Popen(["bash", ARRAY_TASK_SCRIPT, stage, index_path], cwd=ROOT,
                                        env=dict(os.environ, EXPFLOW_TASK_INDEX=str(task)),
                                        stdin=subprocess.DEVNULL))
    for proc in running:
        proc.wait()
    return 0


# ----------------------------------------------------------------- reproducibility records

def git_output(args):
    result = slurmkit.run_command(["git", "-C", ROOT] + args, timeout=30)
    return result.stdout if result.ok else None


def git_snapshot(directory, name):
    """Commit, branch, dirty flag; when dirty, the full diff against HEAD (staged
    and unstaged) as <directory>/git/<name>.patch and the untracked files, so
    `git apply` on the commit gives back the code that was submitted."""
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
        os.makedirs(os.path.join(directory, "git"), exist_ok=True)
        files.write_text_atomic(os.path.join(directory, "git", name + ".patch"), patch)
        snapshot["patch"] = os.path.join("git", name + ".patch")
        snapshot["untracked"] = (git_output(["ls-files", "--others", "--exclude-standard"]) or "").split()
    return snapshot


# ----------------------------------------------------------------- cancelling

def cancel_jobs(jobs):
    """Cancel jobs (metadata entries): one scancel for every SLURM id given (an
    array id cancels all its tasks), SIGTERM to each local job's process group."""
    slurm_ids = sorted({str(job["job_id"]) for job in jobs if job.get("backend") == "slurm"})
    if slurm_ids:
        result = slurmkit.run_command(["scancel"] + slurm_ids, timeout=30)
        if not result.ok:
            files.warn(slurmkit.describe_failure(result))
    for job in jobs:
        if job.get("backend") == "local":
            stop_local_job(job)


def stop_local_job(job):
    """SIGTERM to a local job's whole process group (its bash, its code, a sweep runner)."""
    try:
        os.killpg(int(job["pid"]), signal.SIGTERM)
    except (ProcessLookupError, PermissionError, KeyError, TypeError, ValueError):
        pass  # already gone


def record_early_cancel(exp_path, job, wait=3.0):
    """A local job cancelled before its script could set its traps (within its
    first moments) ends without a record of its own, and would show LOST. Once
    its process group is gone, write the CANCELLED record it could not; a job
    that is still ending records itself, and a record is never overwritten."""
    path = files.run_record_path(exp_path, job["stage"], job["job_id"])
    deadline = time.monotonic() + wait
    while not os.path.exists(path) and files.pid_alive(job.get("pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if os.path.exists(path) or files.pid_alive(job.get("pid")):
        return  # it has its record, or it is setting itself up and will write one
    record = {"stage": job["stage"], "job_id": job["job_id"], "state": "CANCELLED", "exit_code": 143,
              "signal": "TERM", "ended": files.now_iso(), "note": "cancelled before the job had started"}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    files.write_experiment_json(exp_path, path, record, exclusive=True)
