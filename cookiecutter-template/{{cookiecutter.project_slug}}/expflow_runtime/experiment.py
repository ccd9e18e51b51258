# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make new, train, eval, resume, cancel, archive, list, logs and tail: one
experiment at a time (sweep.py does the same for a sweep's points).

Standard library only, Python 3.6+. Values come from the environment, which is
where make puts command-line variables (make train EXP=001 GPUS=2), so no
user-supplied string ever passes through a shell.
"""

import functools
import json
import os
import shlex
import sys

from . import advice, configs, files, ledger, profiles, slurmkit, state, submit, tables, values

ROOT = files.ROOT
STAGES = files.STAGES


# ----------------------------------------------------------------- creating

def config_source(env):
    """(path, parent id or ""): FROM names an experiment or a config file."""
    source = env.get("FROM", "") or files.DEFAULT_CONFIG
    if files.ID_PATTERN.match(source) and os.path.lexists(os.path.join(files.experiments_dir(ROOT), source)):
        return os.path.join(files.experiment_dir(ROOT, source), "config.yaml"), source  # a link: refused
    path = os.path.join(ROOT, source)
    if not os.path.lexists(path):
        raise files.ProjectError("FROM={}: no such experiment or config file".format(source))
    return path, ""  # values.read_text_file refuses anything but a text file


def planned_experiment(env):
    """What make new would write, from FROM (or the default config), SET and the
    resource variables on the command line: (config, its text, metadata, the
    experiment's own resources). Every problem is raised before anything is written."""
    source, parent = config_source(env)
    config = configs.load_yaml(source, "FROM")
    if not isinstance(config, dict):
        raise files.ProjectError("config {} must be a mapping of keys to values".format(source))
    overrides = env.get("SET", "")
    if overrides:
        config = configs.apply_overrides(config, overrides, allow_new=files.flag(env, "SET_NEW"))
        text = configs.comment_line("{} with SET={}".format(os.path.relpath(source, ROOT), overrides)) + \
            configs.dump_yaml_subset(config)
    else:
        text = values.read_text_file(source, "FROM")  # the file itself, comments included
    metadata = {"description": env.get("DESC", ""), "config_source": os.path.relpath(source, ROOT),
                "parent": parent, "overrides": overrides}
    return config, text, metadata, {key: env[key] for key in slurmkit.RESOURCE_KEYS if key in env}


def creation_line(exp_id, metadata):
    return "experiment {} from {}{}".format(exp_id, metadata["config_source"],
                                            " with SET=" + metadata["overrides"] if metadata["overrides"] else "")


def create_experiment(exp_id, env, settings):
    """Make experiments/<exp_id> as planned_experiment says; never touches an existing one."""
    config, text, metadata, own_resources = planned_experiment(env)
    submit.write_experiment(exp_id, config, text, settings, own_resources, metadata)
    print("[OK] created " + creation_line(exp_id, metadata))
    if own_resources:
        print("  it keeps {} for all its jobs (experiments/{}/settings.env); values given to later calls "
              "apply to that call only".format(" ".join("{}={}".format(key, shlex.quote(value)) for key, value
                                                       in sorted(own_resources.items())), exp_id))


def dry_run_new(exp_id, env, settings):
    """DRY_RUN=1 on a new id: the experiment make train would create and the
    command it would submit; nothing is created."""
    config, _text, metadata, own_resources = planned_experiment(env)
    print("DRY_RUN: nothing created. Would create " + creation_line(exp_id, metadata))
    if own_resources:
        print("  with its own settings: " + " ".join(
            "{}={}".format(key, shlex.quote(value)) for key, value in sorted(own_resources.items())))
    print("  config: " + json.dumps(config, sort_keys=True))
    exp_path = files.experiment_dir(ROOT, exp_id)
    resources = submit.resolve_resources(settings, own_resources, env)
    backend, _why = submit.resolve_backend(settings, env)
    if backend != "slurm":
        return submit.print_dry_run(["bash", submit.stage_script("train"), exp_path], "train", resources)
    job_env = dict(submit.job_environment(1), **submit.limits_environment(resources))
    argv = submit.sbatch_argv("train", ledger.job_name(exp_id, "train", ledger.new_token()), exp_path, resources,
                              None, job_env)
    return submit.print_dry_run(argv, "train", resources)


def cmd_new(env):
    create_experiment(files.check_experiment_id(env.get("EXP", "")), env, profiles.project_settings(env))
    return 0


# ----------------------------------------------------------------- reproducibility records

def gpu_type_change(exp_id, metadata, stage, resources, cluster=""):
    """(reference gpu type, where it ran) that this submission would change, or None:
    eval and resume compare with the experiment's own training, the first training
    of a clone with its parent's. A change of cluster (cluster: this one's) is named."""
    reference, where = files.latest_job(metadata, "train"), "its training"  # "... ran on l40s"
    if reference is None and metadata.get("parent"):
        parent = files.experiment_dir(ROOT, metadata["parent"])
        parent_meta = ledger.metadata(parent) if os.path.isdir(parent) else {}
        reference, where = files.latest_job(parent_meta, "train"), "its parent {}".format(metadata["parent"])
    if reference is None or reference.get("backend") != "slurm":
        return None
    before = reference.get("resources", {}).get("gpu_type", "")
    if before and before != resources["gpu_type"]:
        change = {"from": before, "to": resources["gpu_type"] or "no GPU", "reference": where}
        if reference.get("cluster") and cluster and reference["cluster"] != cluster:
            change.update({"from": "{} ({})".format(before, reference["cluster"]),
                           "to": "{} ({})".format(change["to"], cluster)})
        return change
    return None


# ----------------------------------------------------------------- submitting

def eval_dependency(exp_id, jobs):
    """The train job that eval must wait for, or None when train completed;
    jobs is current_jobs' answer (SLURM's view merged with the records)."""
    train = jobs.get("train")
    if train is None:
        raise files.ProjectError("experiment {} has no train job yet: run make train EXP={} first".format(
            exp_id, exp_id))
    if train["state"] == "COMPLETED":
        return None
    if train["state"] in slurmkit.FINAL_STATES or train["state"] == "LOST":
        raise files.ProjectError("train job {} of {} ended {} (exit {}): eval not submitted".format(
            train["job_id"], exp_id, train["state"], train["exit_code"]))
    if train["state"] == "SUBMITTING":
        raise files.ProjectError("the training of {} is still being looked for ({}): try again in a minute".format(
            exp_id, train["reason"]))
    return train


def submit_stage(exp_id, stage, env, settings, current, attempt=1):
    """Submit one stage of an existing experiment, written down before sbatch runs
    (ledger.py). The caller holds the experiment's lock; current is current_jobs'."""
    exp_path = files.experiment_dir(ROOT, exp_id)
    metadata, jobs = current
    resources = submit.resolve_resources(settings, files.read_settings(exp_path, missing_ok=True), env)
    backend, why = submit.resolve_backend(settings, env)
    after = eval_dependency(exp_id, jobs) if stage == "eval" else None
    after_entry = after and files.latest_job(metadata, "train")
    job_env = dict(submit.job_environment(attempt), **submit.limits_environment(resources))
    token = ledger.new_token()
    intent = {"token": token, "stage": stage, "backend": backend, "resources": resources, "attempt": attempt,
              "job_name": ledger.job_name(exp_id, stage, token), "log_template": files.log_name(stage, "{job_id}")}
    intent.update(profiles.job_place(settings, env, backend))
    change = gpu_type_change(exp_id, metadata, stage, resources, intent["cluster"]) if backend == "slurm" else None
    if backend == "slurm":
        if after_entry and after_entry.get("backend") != "slurm":
            raise files.ProjectError(
                "train of {} still runs on the local backend; submit eval when it ends".format(exp_id))
        argv = submit.sbatch_argv(stage, intent["job_name"], exp_path, resources, after and after["job_id"], job_env)
        if files.flag(env, "DRY_RUN"):
            return submit.print_dry_run(argv, stage, resources)
        intent.update(sbatch=argv, after=after["job_id"] if after else None)
        if after:
            intent["dependency"] = "afterok:" + after["job_id"]  # with --kill-on-invalid-dep (state.py)
        launch = functools.partial(submit_one, argv)
    else:
        if files.flag(env, "DRY_RUN"):
            return submit.print_dry_run(["bash", submit.stage_script(stage), exp_path], stage, resources)
        intent.update(job_id="local-" + token, host=files.hostname())
        launch = functools.partial(start_one, stage, exp_path, after_entry, job_env, intent["job_id"])
    submit.snapshot_config_json(exp_path)
    intent["git"] = submit.git_snapshot(exp_path, "{}-{}".format(stage, token))
    if change:
        intent["gpu_type_change"] = change
    try:
        job = submit.submit_recorded([(exp_path, intent)], launch)[0]
    except submit.Rejected as exc:
        raise submit.Rejected(advice.explain_refusal_of(exc.reason, resources, exp_path, env)) from None
    report_submission(exp_id, job, profiles.describe_place(job, settings, why), after, change)
    return 0


def submit_one(argv):
    return {"job_id": submit.submit_slurm(argv)}


def start_one(stage, exp_path, after, job_env, job_id):
    return {"pid": submit.start_local(stage, exp_path, after, job_env, job_id)}


def report_submission(exp_id, job, why, after, change):
    waiting = " after train job {}".format(after["job_id"]) if after else ""
    print("[OK] submitted {} job {} for {} ({}; {}){}".format(
        job["stage"], job["job_id"], exp_id, why, submit.describe(job["resources"], job["backend"]), waiting))
    if job["git"].get("dirty"):
        print("WARNING: submitted from a dirty git tree; the diff is saved in experiments/{}/{}".format(
            exp_id, job["git"].get("patch", "(no commit yet)")), file=sys.stderr)
    if job["backend"] == "slurm" and submit.mail_warning(job["resources"]):
        files.warn(submit.mail_warning(job["resources"]))
    if change:
        print("WARNING: {} job {} of {} runs on {}, {} ran on {}: results may differ across GPU types".format(
            job["stage"], job["job_id"], exp_id, change["to"], change["reference"], change["from"]), file=sys.stderr)


def cmd_train(env):
    return submit_new_stage(env, "train")


def cmd_eval(env):
    return submit_new_stage(env, "eval")


def submit_new_stage(env, stage):
    """make train / make eval: the stage's first job (RESUBMIT=1: another one,
    once no job of the experiment may still run)."""
    exp_id = files.check_experiment_id(env.get("EXP", ""))
    settings = profiles.project_settings(env)
    exp_path = files.experiment_dir(ROOT, exp_id)
    if os.path.isdir(exp_path):
        return submit_existing(exp_id, exp_path, stage, env, settings)
    if stage != "train":
        raise files.ProjectError("no experiment {}: run make train EXP={} first".format(exp_id, exp_id))
    if files.flag(env, "DRY_RUN"):
        return dry_run_new(exp_id, env, settings)
    create_experiment(exp_id, env, settings)
    return submit_existing(exp_id, exp_path, stage, env, settings, created=True)


def submit_existing(exp_id, exp_path, stage, env, settings, created=False):
    """created: this call made the experiment; refused by SLURM, it is taken back
    before the lock is let go, so that no second make train can have used it."""
    with ledger.locked(exp_path, exp_id, "make " + stage):
        try:
            return submit_locked(exp_id, stage, env, settings)
        except submit.Rejected as exc:
            if not created:
                raise
            # nothing ran: the values SLURM refused must not stay in experiments/<id>/settings.env
            submit.remove_new_experiment(exp_path)
            raise files.ProjectError("{}; experiment {} was not kept".format(exc, exp_id)) from None


def submit_locked(exp_id, stage, env, settings):
    """submit_existing's work, under the experiment's lock."""
    current = current_jobs(exp_id, settings, env)
    jobs = current[1]
    previous = jobs.get(stage)
    if previous and previous["state"] == "SUBMITTING":
        raise files.ProjectError("a {} submission of {} is still being looked for ({}); try again in a minute"
                                 .format(stage, exp_id, previous["reason"]))
    if previous and not files.flag(env, "RESUBMIT"):
        raise files.ProjectError("experiment {} already has a {} job ({}); add RESUBMIT=1 to submit another"
                                 .format(exp_id, stage, previous["job_id"]))
    if previous:
        refuse_while_running(exp_id, jobs, env, "submit another " + stage)
    if stage == "eval":
        refuse_other_cluster(exp_id, jobs.get("train"), env, "evaluate it")
    return submit_stage(exp_id, stage, env, settings, current)


def refuse_other_cluster(exp_id, train, env, what):
    """Eval and resume go on from the training's checkpoints, which may be on
    the scratch of the cluster it ran on: refused on another cluster unless
    FORCE=1, and never while it may still run there (no job of here could wait
    for it). train: current_jobs' merged training job."""
    if not train or not train.get("cluster"):
        return  # recorded without a cluster: this one's
    here, _problem = profiles.cluster_here(ROOT, env)
    if not profiles.elsewhere(train, here):
        return
    where = "the training of {} ran on {} (job {}, last seen {}), this is {}".format(
        exp_id, train["cluster"], train["job_id"], train["state"], here or "a machine without SLURM")
    if train["state"] != "COMPLETED" and state.may_still_run(train):
        raise files.ProjectError("{}: cannot {} here while it may still run there".format(where, what))
    if not files.flag(env, "FORCE"):
        raise files.ProjectError("{}: its checkpoints may be on {}'s scratch; {} there, or add FORCE=1 to {} here "
                                 "anyway".format(where, train["cluster"], what.split()[0], what))
    files.warn("FORCE=1: {}; going on".format(where))


def refuse_while_running(exp_id, jobs, env, what):
    """No second job may train an experiment SLURM may still run a job of (UNKNOWN
    and SUBMITTING count: not knowing is not knowing it ended); FORCE=1 goes on."""
    live = [job for job in jobs.values() if state.may_still_run(job)]
    if not live:
        return
    held = ", ".join("job {} {}".format(job["job_id"] or "(being looked for)", state.describe_state(job))
                     for job in live)
    if not files.flag(env, "FORCE"):
        raise files.ProjectError("experiment {} still has {} (it may still run): cannot {} now; make cancel "
                                 "EXP={} first, or FORCE=1 if you know it ended".format(exp_id, held, what, exp_id))
    files.warn("FORCE=1: {} of {} although it may still run ({})".format(what, exp_id, held))


# ----------------------------------------------------------------- state of an experiment

def current_jobs(exp_id, settings, env):
    """(its metadata with every job, {stage: merged job} for the newest job of each
    stage): the experiment read once, settled and merged with one scheduler
    call. Metadata that cannot be read is an error: its jobs are unknown."""
    experiment = state.load_experiment(ROOT, exp_id)
    if experiment["unreadable"]:
        raise files.ProjectError("cannot read experiment {}: {}".format(exp_id, experiment["unreadable"]))
    jobs = {stage: job for _, stage, job in state.job_table([experiment], settings, env)}
    return experiment["metadata"], jobs


def existing(env):
    exp_id = files.check_experiment_id(env.get("EXP", ""))
    if not os.path.isdir(files.experiment_dir(ROOT, exp_id)):
        raise files.ProjectError("no experiment {}".format(exp_id))
    return exp_id


def cmd_resume(env):
    """Resubmit a failed, cancelled or timed-out training in place: same directory,
    same checkpoints, attempt n+1; the job sees EXPFLOW_RESUME=1."""
    exp_id = existing(env)
    settings = profiles.project_settings(env)
    exp_path = files.experiment_dir(ROOT, exp_id)
    with ledger.locked(exp_path, exp_id, "make resume"):
        current = current_jobs(exp_id, settings, env)
        metadata, jobs = current
        train = jobs.get("train")
        if train is None:
            raise files.ProjectError("experiment {} was never trained: make train EXP={}".format(exp_id, exp_id))
        refuse_other_cluster(exp_id, train, env, "resume it")
        refuse_while_running(exp_id, jobs, env, "resume")
        if train["state"] not in state.RESUMABLE and not files.flag(env, "FORCE"):
            raise files.ProjectError("train job {} of {} is {}: only {} can be resumed".format(
                train["job_id"], exp_id, state.describe_state(train), ", ".join(state.RESUMABLE)))
        attempt = files.latest_job(metadata, "train").get("attempt", 1) + 1
        return submit_stage(exp_id, "train", env, settings, current, attempt=attempt)


def cmd_cancel(env):
    exp_id = existing(env)
    metadata, jobs = current_jobs(exp_id, profiles.project_settings(env), env)
    live = profiles.only_here([files.latest_job(metadata, stage) for stage, job in sorted(jobs.items())
                               if job["state"] not in slurmkit.FINAL_STATES and job["job_id"]], env)
    for stage, job in sorted(jobs.items()):
        if job["state"] == "SUBMITTING":
            files.warn("the {} submission of {} is still being looked for ({}): make cancel again once make "
                       "status shows its job".format(stage, exp_id, job["reason"]))
    if not live:
        print("experiment {} has no job left to cancel".format(exp_id))
        return 0
    submit.cancel_jobs(live)
    for job in live:
        if job.get("backend") == "local" and job.get("stage"):
            submit.record_early_cancel(files.experiment_dir(ROOT, exp_id), job)
    print("[OK] cancel requested for {}: {}".format(exp_id, ", ".join(
        "{} job {}".format(job["stage"], job["job_id"]) for job in live)))
    return 0


def cmd_archive(env):
    """Move an experiment out of the active set, into archive/; never deletes,
    and never while a job of it may still run (it would lose its files)."""
    exp_id = existing(env)
    exp_path = files.experiment_dir(ROOT, exp_id)
    target = os.path.join(ROOT, "archive", exp_id)
    with ledger.locked(exp_path, exp_id, "make archive"):
        _, jobs = current_jobs(exp_id, profiles.project_settings(env), env)
        refuse_while_running(exp_id, jobs, env, "archive it")
        if os.path.lexists(target):
            raise files.ProjectError("archive/{} already exists; nothing moved".format(exp_id))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(exp_path, target)
        os.unlink(os.path.join(target, ledger.LOCK_FILE))  # ours: it moved with the experiment
    print("[OK] archived {} -> archive/{}".format(exp_id, exp_id))
    return 0


def cmd_list(env):
    """Ids with the state of their newest job and their description."""
    settings = profiles.project_settings(env)
    experiments = state.load_all(ROOT, settings)
    latest = {}
    for exp, _stage, job in state.job_table(experiments, settings, env):
        latest[exp["id"]] = job["state"]  # eval follows train in job_table's order
    wanted = env.get("STATE", "").upper()
    state.warn_problems(experiments)
    rows = [[exp["id"], latest.get(exp["id"]) or state.unsubmitted_state(exp), exp["metadata"].get("description", "")]
            for exp in experiments]
    rows = [row for row in rows if not wanted or row[1] == wanted]
    sys.stdout.write(tables.plain_table(["EXP", "STATE", "DESCRIPTION"], rows, tables.terminal_width(env)))
    return 0


# ----------------------------------------------------------------- logs

def log_path(env):
    exp_id = existing(env)
    stage = env.get("STAGE") or "train"
    if stage not in STAGES:
        raise files.ProjectError("STAGE={!r} is not one of {}".format(stage, ", ".join(STAGES)))
    exp_path = files.experiment_dir(ROOT, exp_id)
    job = files.latest_job(ledger.metadata(exp_path), stage)
    if job is None:
        raise files.ProjectError("experiment {} has no {} job".format(exp_id, stage))
    if not job.get("log"):
        raise files.ProjectError("the {} job of {} is still being looked for (sbatch's answer was lost): "
                                 "make status shows it once found".format(stage, exp_id))
    return os.path.join(exp_path, job["log"]), job


def line_count(env):
    return values.whole_number("N", env.get("N") or "100")


def cmd_logs(env):
    path, job = log_path(env)
    lines = line_count(env)
    if not os.path.exists(path):
        moved = os.path.join(os.path.dirname(path), files.MOVED_NOTE)  # written by make prune-logs
        if os.path.exists(moved):
            raise files.ProjectError(values.read_text_file(moved, "logs").strip())
        print("{} job {} has not written its log yet ({})".format(job["stage"], job["job_id"], path))
        return 0
    with open(path, errors="replace") as handle:
        sys.stdout.writelines(handle.readlines()[-lines:] if lines else [])
    return 0


def cmd_tail(env):
    path, _ = log_path(env)
    sys.stdout.flush()
    os.execvp("tail", ["tail", "-n", str(line_count(env)), "-F", path])


