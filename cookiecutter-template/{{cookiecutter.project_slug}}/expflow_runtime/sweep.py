# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make sweep, sweep-retry, and eval / cancel with SWEEP=: sweeps as job arrays.

Each point of a sweep file becomes an ordinary experiment tagged with the sweep
and its point, so status, results and compare work on it unchanged. The points
are submitted together as ONE `sbatch --array=0-(N-1)%MAX_PARALLEL` (split only
where N exceeds the cluster's MaxArraySize); each array task finds its
experiment on its line of an index file written before submission.

Standard library only, Python 3.6+.
"""

import functools
import os

from . import configs, files, ledger, profiles, slurmkit, state, submit, sweepspec, tables, values

ROOT = files.ROOT


# ----------------------------------------------------------------- creating the points

def completed_hashes(env, settings):
    """{config hash: experiment id} of every COMPLETED experiment (one scheduler call)."""
    experiments = state.load_all(ROOT, settings)
    done = {exp["id"] for exp, stage, job in state.job_table(experiments, settings, env)
            if stage == "train" and job["state"] == "COMPLETED"}
    return {configs.config_hash(exp["config"]): exp["id"] for exp in experiments if exp["id"] in done}


def stored_config(exp_path):
    config, _ = files.read_json(os.path.join(exp_path, "config.json"))
    return config if isinstance(config, dict) else {}


def create_points(spec, settings, env):
    """Create the experiments of the sweep's new points; returns (ids to submit,
    [(id, why skipped)]). Every point is checked before any is written."""
    completed = {} if files.flag(env, "FORCE") else completed_hashes(env, settings)
    resources = {str(k).upper(): str(v) for k, v in (spec.get("resources") or {}).items()}
    plan, skipped = [], []
    for exp_id, index, point, config in sweepspec.planned_points(spec):
        digest = configs.config_hash(config)
        existing = files.experiment_dir(ROOT, exp_id)
        if os.path.isdir(existing):
            if configs.config_hash(stored_config(existing)) != digest:
                raise files.ProjectError("{} exists with another config: give the changed sweep a new name".format(
                    exp_id))
            if ledger.metadata(existing)["jobs"]:
                skipped.append((exp_id, "already submitted"))
            else:
                plan.append((exp_id, None))
        elif digest in completed:
            skipped.append((exp_id, "same config as {}, which COMPLETED (FORCE=1 runs it)".format(completed[digest])))
        else:
            plan.append((exp_id, (index, point, config, digest)))
    for exp_id, new in plan:
        if new:
            index, point, config, digest = new
            text = configs.comment_line("sweep {} point {}: {}".format(spec["name"], index, sweepspec.point_text(
                point))) + configs.dump_yaml_subset(config)
            submit.write_experiment(exp_id, config, text, settings, resources, {
                "description": "sweep {} point {}".format(spec["name"], index), "config_source": spec["file"],
                "parent": "", "overrides": sweepspec.point_text(point), "sweep": spec["name"], "sweep_index": index,
                "sweep_values": point, "config_hash": digest,
            })
    return [exp_id for exp_id, _ in plan], skipped


# ----------------------------------------------------------------- submitting arrays

def chunks(items, size):
    return [items[start:start + size] for start in range(0, len(items), size)]


def point_intent(exp_id, stage, attempt, backend, array_name, task, common):
    """What is written down for one point before its array is submitted; a local
    task gets its job id and log now, a SLURM task once sbatch names the array."""
    exp_path = files.experiment_dir(ROOT, exp_id)
    intent = dict(common, stage=stage, attempt=attempt, backend=backend, job_name=array_name, array_task=task,
                  exp_path=exp_path)
    if backend == "local":
        intent["job_id"] = "local-" + ledger.new_token()
        intent["log"] = os.path.join(exp_path, files.log_name(stage, intent["job_id"]))
        intent["log_template"] = files.log_name(stage, "{job_id}")
    else:
        log = os.path.join(sweepspec.sweep_dir(common["sweep"]), "logs", stage + "-{job_id}.out")
        intent["log_template"] = os.path.relpath(log, exp_path)
    return intent


def submit_points(name, stage, exp_ids, attempts, env, settings, dependency=None):
    """Submit exp_ids' stage as job arrays (one unless MaxArraySize splits them),
    each point written down before sbatch runs and its task after (ledger.py)."""
    backend, why = submit.resolve_backend(settings, env)
    # the sweep file's resources live in every point's own settings.env, alike
    own = files.read_settings(files.experiment_dir(ROOT, exp_ids[0]), missing_ok=True)
    resources = submit.resolve_resources(settings, own, env)
    parallel = env.get("MAX_PARALLEL", "")
    if parallel:
        values.whole_number("MAX_PARALLEL", parallel)  # checked when given too (values.check_variables)
    directory = sweepspec.sweep_dir(name)
    log_dir = os.path.join(directory, "logs")
    os.makedirs(log_dir, exist_ok=True)  # SLURM does not create --output directories
    git = submit.git_snapshot(directory, "{}-{}".format(stage, ledger.new_token()))
    place = profiles.job_place(settings, env, backend)
    size = submit.max_array_size(settings) if backend == "slurm" else len(exp_ids) or 1
    submitted = []
    for group in chunks(list(exp_ids), size):
        token = ledger.new_token()
        common = dict(place, token=token, sweep=name, resources=resources, git=git)
        if dependency and backend == "slurm":
            common["dependency"] = dependency  # make status says why a task never starts (state.py)
        intents = [point_intent(exp_id, stage, attempts.get(exp_id, 1), backend, ledger.job_name(name, stage, token),
                                task, common) for task, exp_id in enumerate(group)]
        index_path = submit.write_index(directory, stage, intents)
        if backend == "slurm":
            argv = submit.array_argv(intents[0]["job_name"], stage, index_path, len(group), resources, log_dir,
                                     parallel, dependency)
            if files.flag(env, "DRY_RUN"):
                print("DRY_RUN: " + " ".join(argv))
                continue
            launch = functools.partial(submit_array, argv)
        else:
            launch = functools.partial(start_local_array, stage, index_path, len(group), parallel or "2", resources)
        entries = []
        for intent in intents:
            exp_path = intent.pop("exp_path")
            entries.append((exp_path, dict(intent, git=point_git(git, directory, exp_path))))
        jobs = submit.submit_recorded(entries, launch, task_outcome)
        submitted.append((jobs[0]["array_job_id"], len(group)))
    for array_id, count in submitted:
        print("[OK] submitted {} of sweep {} as array {} ({})".format(
            tables.count(count, stage + " task"), name, array_id, profiles.describe_place(place, settings, why)))
    return submitted


def submit_array(argv):
    return {"array_job_id": submit.submit_slurm(argv)}


def start_local_array(stage, index_path, count, parallel, resources):
    array_id, pid = submit.start_local_array(stage, index_path, count, parallel, resources)
    return {"array_job_id": array_id, "pid": pid, "host": files.hostname()}


def point_git(git, directory, exp_path):
    """One patch for the whole sweep; its path relative to the point's experiment."""
    if "patch" not in git:
        return git
    return dict(git, patch=os.path.relpath(os.path.join(directory, git["patch"]), exp_path))


def task_outcome(intent, launched):
    """A point's job: its array's task (44_3), or its own local job."""
    outcome = dict(launched)
    if intent["backend"] == "slurm":
        outcome["job_id"] = "{}_{}".format(launched["array_job_id"], intent["array_task"])
    return outcome


# ----------------------------------------------------------------- commands

def sweep_locked(name, what):
    """The sweep's lock (sweeps/NAME/.lock): two make sweep of one sweep at once
    would both see its new points as not submitted yet."""
    os.makedirs(sweepspec.sweep_dir(name), exist_ok=True)
    return ledger.locked(sweepspec.sweep_dir(name), "sweep " + name, what)


def cmd_sweep(env):
    spec = sweepspec.read_sweep_file(env.get("SWEEP", ""))
    settings = profiles.project_settings(env)
    if files.flag(env, "DRY_RUN"):
        for exp_id, _, point, _ in sweepspec.planned_points(spec):
            print("{}  {}".format(exp_id, sweepspec.point_text(point)))
        print("DRY_RUN: nothing created or submitted")
        return 0
    with sweep_locked(spec["name"], "make sweep"):
        to_submit, skipped = create_points(spec, settings, env)
        for exp_id, why in skipped:
            print("skipped {}: {}".format(exp_id, why))
        if not to_submit:
            print("sweep {}: nothing to submit".format(spec["name"]))
            return 0
        files.write_json_atomic(os.path.join(sweepspec.sweep_dir(spec["name"]), "sweep.json"),
                                {"name": spec["name"], "file": spec["file"], "updated": files.now_iso()})
        submit_points(spec["name"], "train", to_submit, {}, env, settings)
    return 0


def sweep_members(name, env, settings):
    """[(experiment, {stage: merged job})] of a sweep, in point order (one scheduler call)."""
    experiments = [exp for exp in state.load_all(ROOT, settings) if exp["metadata"].get("sweep") == name]
    if not experiments:
        raise files.ProjectError("no sweep {}: make sweep SWEEP=configs/{}.yaml".format(name, name))
    jobs = {}
    for exp, stage, job in state.job_table(experiments, settings, env):
        jobs.setdefault(exp["id"], {})[stage] = job
    return [(exp, jobs.get(exp["id"], {})) for exp in experiments]


def cmd_retry(env):
    """Resubmit the points whose training failed, was cancelled or timed out; a
    point with a job SLURM may still run (its evaluation, say) is left out
    unless FORCE=1."""
    name = sweepspec.sweep_name(env.get("SWEEP", ""))
    settings = profiles.project_settings(env)
    with sweep_locked(name, "make sweep-retry"):
        failed = []
        members = sweep_members(name, env, settings)
        here = profiles.cluster_of_jobs([job for _, jobs in members for job in jobs.values()], env)
        for exp, jobs in members:
            if "train" not in jobs or jobs["train"]["state"] not in state.RESUMABLE:
                continue
            if profiles.elsewhere(jobs["train"], here) and not files.flag(env, "FORCE"):
                print("skipped {}: it trained on {}, whose scratch may hold its checkpoints (FORCE=1 retries it "
                      "here)".format(exp["id"], jobs["train"]["cluster"]))
                continue
            live = [job for job in jobs.values() if state.may_still_run(job)]
            if live and not files.flag(env, "FORCE"):
                print("skipped {}: job {} may still run (FORCE=1 retries it anyway)".format(
                    exp["id"], live[0]["job_id"]))
                continue
            failed.append((exp, jobs["train"]))
        if not failed:
            print("sweep {}: no failed, cancelled or timed-out point".format(name))
            return 0
        attempts = {exp["id"]: files.latest_job(exp["metadata"], "train").get("attempt", 1) + 1 for exp, _ in failed}
        print("retrying {}".format(", ".join("{} ({})".format(exp["id"], job["state"]) for exp, job in failed)))
        submit_points(name, "train", [exp["id"] for exp, _ in failed], attempts, env, settings)
    return 0


def cmd_eval(env):
    """One eval array per train array of the sweep, each task after its train task
    (aftercorr); points whose training already completed need no dependency."""
    name = sweepspec.sweep_name(env.get("SWEEP", ""))
    settings = profiles.project_settings(env)
    groups = {}
    members = sweep_members(name, env, settings)
    here = profiles.cluster_of_jobs([job for _, jobs in members for job in jobs.values()], env)
    for exp, jobs in members:
        train = jobs.get("train")
        if train is None or train["state"] in slurmkit.FINAL_STATES and train["state"] != "COMPLETED":
            continue
        if profiles.elsewhere(train, here) and (train["state"] != "COMPLETED" or not files.flag(env, "FORCE")):
            print("skipped {}: it trained on {}; evaluate it there (or FORCE=1 here once it completed)".format(
                exp["id"], train["cluster"]))
            continue
        array = files.latest_job(exp["metadata"], "train").get("array_job_id", "")
        done = train["state"] == "COMPLETED"
        groups.setdefault((array, done), []).append(exp["id"])
    if not groups:
        raise files.ProjectError("sweep {} has no point whose training completed or still runs".format(name))
    for (array, done), exp_ids in sorted(groups.items()):
        dependency = None if done or array.startswith("local") else "aftercorr:" + array
        submit_points(name, "eval", exp_ids, {}, env, settings, dependency)
    return 0


def cmd_cancel(env):
    name = sweepspec.sweep_name(env.get("SWEEP", ""))
    settings = profiles.project_settings(env)
    live = [(exp, stage) for exp, jobs in sweep_members(name, env, settings) for stage, job in jobs.items()
            if job["state"] not in slurmkit.FINAL_STATES]
    entries = profiles.only_here([files.latest_job(exp["metadata"], stage) for exp, stage in live], env)
    # one scancel for every array: cancelling an array cancels all its tasks
    arrays = {entry["array_job_id"] for entry in entries if entry.get("backend") == "slurm"}
    local = [entry for entry in entries if entry.get("backend") == "local"]
    submit.cancel_jobs([{"backend": "slurm", "job_id": array} for array in arrays] + local)
    print("[OK] cancel requested for sweep {}: {}".format(name, tables.count(len(live), "unfinished job")))
    return 0
