#!/usr/bin/env python3
"""Sweeps as SLURM job arrays: one file, one `make sweep`, one sbatch call.

Each point of a sweep file (configs/sweep-example.yaml says how to write one)
becomes an ordinary experiment <sweep>-0001, <sweep>-0002, ... tagged with the
sweep and its point, so status, results and compare work on it unchanged. The
points are submitted together as ONE `sbatch --array=0-(N-1)%MAX_PARALLEL`
(split only where N exceeds the cluster's MaxArraySize); each array task finds
its experiment on its line of an index file written before submission.

Standard library only, Python 3.6+, run as `python3 -I`.
"""

import itertools
import math
import os
import random
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out

import experiment as xp  # noqa: E402
import harvest  # noqa: E402
import projectlib as pl  # noqa: E402
import slurmkit  # noqa: E402

ROOT = xp.ROOT
SWEEP_KEYS = ("name", "base", "grid", "zip", "random", "set", "resources", "allow_new")


# ----------------------------------------------------------------- the sweep file

def sweep_name(value):
    """SWEEP names a sweep file (configs/x.yaml) or a sweep (x)."""
    if not value:
        raise pl.ProjectError("name a sweep: SWEEP=configs/lr-sweep.yaml (or SWEEP=lr-sweep once submitted)")
    if value.endswith((".yaml", ".yml")) or "/" in value:
        spec = read_sweep_file(value)
        return spec["name"]
    return pl.check_experiment_id(value)


def read_sweep_file(path):
    full = os.path.join(ROOT, path)
    if not os.path.isfile(full):
        raise pl.ProjectError("sweep file {} not found".format(path))
    spec = pl.load_yaml(full)
    if not isinstance(spec, dict):
        raise pl.ProjectError("{}: a sweep file is a mapping (base, grid, zip, random, set, resources)".format(path))
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise pl.ProjectError("{}: unknown key {} (known: {})".format(path, unknown[0], ", ".join(SWEEP_KEYS)))
    spec.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    pl.check_experiment_id(str(spec["name"]))
    spec["file"] = path
    return spec


def grid_points(grid):
    keys = sorted(grid)
    for key in keys:
        if not isinstance(grid[key], list) or not grid[key]:
            raise pl.ProjectError("grid: {} needs a non-empty list of values".format(key))
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def zip_points(table):
    lengths = {len(v) if isinstance(v, list) else -1 for v in table.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise pl.ProjectError("zip: every key needs a list, all of the same length")
    keys = sorted(table)
    return [dict(zip(keys, values)) for values in zip(*(table[k] for k in keys))]


def draw(rng, key, rule):
    """One random value by a rule: choice, uniform, loguniform or int."""
    if not isinstance(rule, dict) or len(rule) != 1:
        raise pl.ProjectError("random: {} needs one of choice, uniform, loguniform, int".format(key))
    kind, arguments = next(iter(rule.items()))
    if kind == "choice" and isinstance(arguments, list) and arguments:
        return rng.choice(arguments)
    if not (isinstance(arguments, list) and len(arguments) == 2):
        raise pl.ProjectError("random: {}: {} takes [low, high]".format(key, kind))
    low, high = arguments
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "loguniform" and low > 0 and high > 0:
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if kind == "int":
        return rng.randint(low, high)
    raise pl.ProjectError("random: {}: unknown rule {!r} (choice, uniform, loguniform, int)".format(key, kind))


def random_points(spec):
    spec = dict(spec)
    samples, seed = spec.pop("samples", None), spec.pop("seed", 0)
    if not isinstance(samples, int) or samples < 1:
        raise pl.ProjectError("random: samples must be a whole number, at least 1")
    rng = random.Random(seed)  # recorded in the sweep file: the same draws every time
    keys = sorted(spec)
    return [{key: draw(rng, key, spec[key]) for key in keys} for _ in range(samples)]


def expand(spec):
    """Every point of the sweep: grid x zip x random (each [{}] when absent)."""
    parts = [
        grid_points(spec["grid"]) if spec.get("grid") else [{}],
        zip_points(spec["zip"]) if spec.get("zip") else [{}],
        random_points(spec["random"]) if spec.get("random") else [{}],
    ]
    points = []
    for combination in itertools.product(*parts):
        point = {}
        for part in combination:
            point.update(part)
        points.append(point)
    if points == [{}]:
        raise pl.ProjectError("{}: no axes: add grid, zip or random".format(spec["file"]))
    return points


def point_id(name, index, total):
    return "{}-{:0{}d}".format(name, index, max(4, len(str(total))))


# ----------------------------------------------------------------- creating the points

def planned_points(spec):
    """[(exp_id, index, values, config)] for every point, configs fully built."""
    base_path = os.path.join(ROOT, spec.get("base") or xp.DEFAULT_CONFIG)
    if not os.path.isfile(base_path):
        raise pl.ProjectError("{}: base config {} not found".format(spec["file"], spec.get("base")))
    base = pl.set_values(pl.load_yaml(base_path), spec.get("set") or {}, bool(spec.get("allow_new")), "set")
    points = expand(spec)
    planned = []
    for index, values in enumerate(points, 1):
        config = pl.set_values(base, values, bool(spec.get("allow_new")), "sweep point {}".format(index))
        planned.append((point_id(spec["name"], index, len(points)), index, values, config))
    return planned


def completed_hashes(env, settings):
    """{config hash: experiment id} of every COMPLETED experiment (one scheduler call)."""
    experiments = harvest.load_all(ROOT, settings)
    done = {exp["id"] for exp, stage, job in harvest.job_table(experiments, settings, env)
            if stage == "train" and job["state"] == "COMPLETED"}
    return {pl.config_hash(exp["config"]): exp["id"] for exp in experiments if exp["id"] in done}


def stored_config(exp_path):
    config, _ = pl.read_json(os.path.join(exp_path, "config.json"))
    return config if isinstance(config, dict) else {}


def create_points(spec, settings, env):
    """Create the experiments of the sweep's new points; returns (ids to submit,
    [(id, why skipped)]). Every point is checked before any is written."""
    completed = {} if xp.flag(env, "FORCE") else completed_hashes(env, settings)
    resources = {str(k).upper(): str(v) for k, v in (spec.get("resources") or {}).items()}
    plan, skipped = [], []
    for exp_id, index, values, config in planned_points(spec):
        digest = pl.config_hash(config)
        existing = pl.experiment_dir(ROOT, exp_id)
        if os.path.isdir(existing):
            if pl.config_hash(stored_config(existing)) != digest:
                raise pl.ProjectError("{} exists with another config: give the changed sweep a new name".format(
                    exp_id))
            if xp.read_metadata(existing)["jobs"]:
                skipped.append((exp_id, "already submitted"))
            else:
                plan.append((exp_id, None))
        elif digest in completed:
            skipped.append((exp_id, "same config as {}, which COMPLETED (FORCE=1 runs it)".format(completed[digest])))
        else:
            plan.append((exp_id, (index, values, config, digest)))
    for exp_id, new in plan:
        if new:
            index, values, config, digest = new
            text = "# sweep {} point {}: {}\n{}".format(spec["name"], index, point_text(values),
                                                        pl.dump_yaml_subset(config))
            xp.write_experiment(exp_id, config, text, settings, resources, {
                "description": "sweep {} point {}".format(spec["name"], index), "config_source": spec["file"],
                "parent": "", "overrides": point_text(values), "sweep": spec["name"], "sweep_index": index,
                "sweep_values": values, "config_hash": digest,
            })
    return [exp_id for exp_id, _ in plan], skipped


def point_text(values):
    return " ".join("{}={}".format(k, harvest.format_value(v)) for k, v in sorted(values.items()))


# ----------------------------------------------------------------- submitting arrays

def sweep_dir(name):
    return os.path.join(ROOT, "sweeps", name)


def max_array_size(settings):
    """Tasks one array may hold: MaxArraySize (an index runs from 0 to MaxArraySize-1)."""
    value = settings.get("MAX_ARRAY_SIZE", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    result = slurmkit.run_command(slurmkit.SCONTROL_CONFIG_ARGV, timeout=15)
    found = slurmkit.parse_scontrol_config(result.stdout).get("MaxArraySize", "") if result.ok else ""
    return int(found) if found.isdigit() else 1001  # SLURM's default


def chunks(items, size):
    return [items[start:start + size] for start in range(0, len(items), size)]


def write_index(name, stage, lines):
    """The index file a job array reads: line i+1 is task i (attempt, experiment, job id)."""
    os.makedirs(os.path.join(sweep_dir(name), "logs"), exist_ok=True)
    path = os.path.join(sweep_dir(name), "{}-{}.index".format(stage, uuid.uuid4().hex[:8]))
    with open(path, "w") as handle:
        handle.write("".join("\t".join(line) + "\n" for line in lines))
    return path


def array_argv(name, stage, index_path, count, resources, env, dependency):
    """sbatch for one job array of a sweep: task i runs line i+1 of index_path."""
    parallel = env.get("MAX_PARALLEL", "")
    if parallel and not parallel.isdigit():
        raise pl.ProjectError("MAX_PARALLEL={!r} is not a whole number".format(parallel))
    argv = ["sbatch", "--parsable", "--job-name={}-{}".format(name, stage), "--chdir={}".format(ROOT),
            "--output={}".format(os.path.join(sweep_dir(name), "logs", stage + "-%A_%a.out")),
            "--array=0-{}{}".format(count - 1, "%" + parallel if parallel else "")]
    argv += xp.resource_options(resources)
    if dependency:
        argv.append("--dependency=" + dependency)
    return argv + [os.path.join("scripts", "sweep.sbatch"), stage, index_path]


def submit_points(name, stage, exp_ids, attempts, env, settings, dependency=None):
    """Submit exp_ids' stage as job arrays (one unless MaxArraySize splits them)
    and record each task in its experiment's metadata."""
    backend, why = xp.resolve_backend(settings, env)
    # the sweep file's resources live in every point's own settings.env, alike
    own = pl.read_settings(pl.experiment_dir(ROOT, exp_ids[0]), missing_ok=True)
    resources = xp.resolve_resources(settings, own, env)
    git = xp.git_snapshot(sweep_dir(name), "{}-{}".format(stage, uuid.uuid4().hex[:8]))
    size = max_array_size(settings) if backend == "slurm" else len(exp_ids) or 1
    submitted = []
    for group in chunks(list(exp_ids), size):
        lines = [(str(attempts.get(e, 1)), pl.experiment_dir(ROOT, e), "local-" + uuid.uuid4().hex[:8]) for e in group]
        index_path = write_index(name, stage, lines)
        if backend == "slurm":
            argv = array_argv(name, stage, index_path, len(group), resources, env, dependency)
            if xp.flag(env, "DRY_RUN"):
                print("DRY_RUN: " + " ".join(argv))
                continue
            array_id = xp.submit_slurm(argv)
            task_ids = ["{}_{}".format(array_id, task) for task in range(len(group))]
            logs = [os.path.join("sweeps", name, "logs", "{}-{}.out".format(stage, t)) for t in task_ids]
        else:
            array_id, pid = start_local_runner(stage, index_path, env)
            task_ids = [line[2] for line in lines]
            logs = [os.path.join("experiments", e, "logs", "{}-{}.out".format(stage, t))
                    for e, t in zip(group, task_ids)]
        for exp_id, task_id, log in zip(group, task_ids, logs):
            exp_path = pl.experiment_dir(ROOT, exp_id)
            job = {"stage": stage, "backend": backend, "submitted": pl.now_iso(), "resources": resources,
                   "attempt": attempts.get(exp_id, 1), "job_id": task_id, "array_job_id": array_id,
                   "log": os.path.relpath(os.path.join(ROOT, log), exp_path), "git": dict(git)}
            if "patch" in git:  # one patch for the whole sweep; paths stay relative to the experiment
                job["git"]["patch"] = os.path.relpath(os.path.join(sweep_dir(name), git["patch"]), exp_path)
            if backend == "local":
                job.update(pid=pid, host=socket.gethostname())
            record_job(exp_id, job)
        submitted.append((array_id, len(group)))
    for array_id, count in submitted:
        print("[OK] submitted {} {} tasks of sweep {} as array {} ({})".format(count, stage, name, array_id, why))
    return submitted


def record_job(exp_id, job):
    path = pl.experiment_dir(ROOT, exp_id)
    metadata = xp.read_metadata(path)
    metadata["jobs"].append(job)
    pl.write_json_atomic(os.path.join(path, "metadata.json"), metadata)


def start_local_runner(stage, index_path, env):
    """The local backend's job array: one detached runner, at most MAX_PARALLEL
    points at a time (2 unless set)."""
    parallel = env.get("MAX_PARALLEL") or "2"
    proc = subprocess.Popen(
        [sys.executable, "-I", os.path.abspath(__file__), "run-local", stage, index_path, parallel],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return "local-array-{}".format(proc.pid), proc.pid


def run_local(stage, index_path, parallel):
    """Run each line of an index file with bash, at most `parallel` at once."""
    with open(index_path) as handle:
        lines = [line.rstrip("\n").split("\t") for line in handle if line.strip()]
    running = []
    for attempt, exp_path, job_id in lines:
        while len(running) >= int(parallel):
            time.sleep(0.2)
            running = [proc for proc in running if proc.poll() is None]
        env = dict(os.environ, EXPFLOW_LOCAL_JOB_ID=job_id, EXPFLOW_ATTEMPT=attempt,
                   EXPFLOW_RESUME="1" if int(attempt) > 1 else "0")
        with open(os.path.join(exp_path, "logs", "{}-{}.out".format(stage, job_id)), "ab") as log:
            running.append(subprocess.Popen(
                ["bash", os.path.join("scripts", stage + ".sbatch"), exp_path], cwd=ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    for proc in running:
        proc.wait()
    return 0


# ----------------------------------------------------------------- commands

def cmd_sweep(env):
    spec = read_sweep_file(env.get("SWEEP", ""))
    settings = pl.read_settings(ROOT)
    if xp.flag(env, "DRY_RUN"):
        for exp_id, _, values, _ in planned_points(spec):
            print("{}  {}".format(exp_id, point_text(values)))
    to_submit, skipped = ([], []) if xp.flag(env, "DRY_RUN") else create_points(spec, settings, env)
    for exp_id, why in skipped:
        print("skipped {}: {}".format(exp_id, why))
    if xp.flag(env, "DRY_RUN"):
        print("DRY_RUN: nothing created or submitted")
        return 0
    if not to_submit:
        print("sweep {}: nothing to submit".format(spec["name"]))
        return 0
    os.makedirs(sweep_dir(spec["name"]), exist_ok=True)
    pl.write_json_atomic(os.path.join(sweep_dir(spec["name"]), "sweep.json"),
                         {"name": spec["name"], "file": spec["file"], "updated": pl.now_iso()})
    submit_points(spec["name"], "train", to_submit, {}, env, settings)
    return 0


def sweep_members(name, env, settings):
    """[(experiment, {stage: merged job})] of a sweep, in point order (one scheduler call)."""
    experiments = [exp for exp in harvest.load_all(ROOT, settings) if exp["metadata"].get("sweep") == name]
    if not experiments:
        raise pl.ProjectError("no sweep {}: make sweep SWEEP=configs/{}.yaml".format(name, name))
    jobs = {}
    for exp, stage, job in harvest.job_table(experiments, settings, env):
        jobs.setdefault(exp["id"], {})[stage] = job
    return [(exp, jobs.get(exp["id"], {})) for exp in experiments]


def cmd_retry(env):
    name = sweep_name(env.get("SWEEP", ""))
    settings = pl.read_settings(ROOT)
    failed = [(exp, jobs["train"]) for exp, jobs in sweep_members(name, env, settings)
              if "train" in jobs and jobs["train"]["state"] in xp.RESUMABLE]
    if not failed:
        print("sweep {}: no failed, cancelled or timed-out point".format(name))
        return 0
    attempts = {exp["id"]: pl.latest_job(exp["metadata"], "train").get("attempt", 1) + 1 for exp, _ in failed}
    print("retrying {}".format(", ".join("{} ({})".format(exp["id"], job["state"]) for exp, job in failed)))
    submit_points(name, "train", [exp["id"] for exp, _ in failed], attempts, env, settings)
    return 0


def cmd_eval(env):
    """One eval array per train array of the sweep, each task after its train task
    (aftercorr); points whose training already completed need no dependency."""
    name = sweep_name(env.get("SWEEP", ""))
    settings = pl.read_settings(ROOT)
    groups = {}
    for exp, jobs in sweep_members(name, env, settings):
        train = jobs.get("train")
        if train is None or train["state"] in slurmkit.FINAL_STATES and train["state"] != "COMPLETED":
            continue
        array = pl.latest_job(exp["metadata"], "train").get("array_job_id", "")
        done = train["state"] == "COMPLETED"
        groups.setdefault((array, done), []).append(exp["id"])
    if not groups:
        raise pl.ProjectError("sweep {} has no point whose training completed or still runs".format(name))
    for (array, done), exp_ids in sorted(groups.items()):
        dependency = None if done or array.startswith("local") else "aftercorr:" + array
        submit_points(name, "eval", exp_ids, {}, env, settings, dependency)
    return 0


def cmd_cancel(env):
    name = sweep_name(env.get("SWEEP", ""))
    settings = pl.read_settings(ROOT)
    live = [(exp, job) for exp, jobs in sweep_members(name, env, settings) for job in jobs.values()
            if job["state"] not in slurmkit.FINAL_STATES]
    arrays = sorted({job["job_id"].split("_")[0] for _, job in live if not job["job_id"].startswith("local")})
    if arrays:  # one scancel for every array: cancelling an array cancels all its tasks
        result = slurmkit.run_command(["scancel"] + arrays, timeout=30)
        if not result.ok:
            print("WARNING: " + slurmkit.describe_failure(result), file=sys.stderr)
    for exp, job in live:
        if job["job_id"].startswith("local"):
            xp.stop_local_job(pl.latest_job(exp["metadata"], job["stage"]))
    print("[OK] cancel requested for sweep {}: {} unfinished jobs".format(name, len(live)))
    return 0


COMMANDS = {"sweep": cmd_sweep, "retry": cmd_retry, "eval": cmd_eval, "cancel": cmd_cancel}


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run-local"] and len(argv) == 4:
        return run_local(*argv[1:])
    return pl.run_command_table(COMMANDS, argv, env)


if __name__ == "__main__":
    sys.exit(main())
