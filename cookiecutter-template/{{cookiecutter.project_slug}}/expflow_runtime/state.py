# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""One experiment's state: its files merged with ONE scheduler answer.

Reads each experiment's metadata, the records its jobs wrote, its config and
metrics, and asks the scheduler once per call about the jobs whose outcome the
files do not settle (sacct, or squeue when accounting is off).

Metrics of a stage come from, later winning: the patterns METRIC_PATTERN* of
settings.env applied to the job's log (last match wins), then the stage's
results JSON, or, when there is none yet, the last line of its metrics JSONL.

Standard library only, Python 3.6+.
"""

import json
import os
import re
from datetime import datetime

from . import configs, files, ledger, profiles, reconcile, slurmkit

STAGES = files.STAGES
# what make resume and sweep-retry take up again
RESUMABLE = ("FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "LOST")


# ----------------------------------------------------------------- reading experiments

def metric_patterns(settings):
    """The METRIC_PATTERN* settings, compiled; each needs named groups."""
    patterns = []
    for key in sorted(k for k in settings if k.startswith("METRIC_PATTERN") and settings[k]):
        try:
            pattern = re.compile(settings[key])
        except re.error as exc:
            raise files.ProjectError("{}: not a regular expression: {}".format(key, exc)) from None
        if not pattern.groupindex:
            raise files.ProjectError("{}: name the metric with a group, e.g. (?P<val_acc>[0-9.]+)".format(key))
        patterns.append(pattern)
    return patterns


def number_or_text(text):
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


def log_metrics(path, patterns, problems=None):
    """Metrics a job printed, by the settings' patterns; the last match wins. A
    log that cannot be read (permissions) is said in problems when given."""
    found = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                for pattern in patterns:
                    for match in pattern.finditer(line):
                        found.update((k, number_or_text(v)) for k, v in match.groupdict().items() if v is not None)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if problems is not None:
            problems.append("logs/{}: {}".format(os.path.basename(path), exc.strerror or exc))
    return found


def last_json_line(path, chunk=65536):
    """The last complete JSON object of a JSONL file (a running job may be
    writing the final line), read from the end of the file; {} when none."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - chunk))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and not files.too_deep(record):
            return record
    return {}


def stage_metrics(path, present, metadata, stage, patterns, problems):
    """A stage's metrics; present is the set of file names in the experiment, so
    that files a stage has not written are not even tried (10,000s of them)."""
    metrics = {}
    job = files.latest_job(metadata, stage)
    if patterns and job and job.get("log"):
        metrics.update(log_metrics(os.path.join(path, job["log"]), patterns, problems))
    name, series = "{}_results.json".format(stage), "{}_metrics.jsonl".format(stage)
    results, problem = files.read_json(os.path.join(path, name)) if name in present else (None, "")
    if problem:
        problems.append(problem)
    elif results is not None and not isinstance(results, dict):
        problems.append("{}: not a JSON object".format(name))
    elif results is not None:
        metrics.update(results)
    elif series in present:
        metrics.update(last_json_line(os.path.join(path, series)))
    return metrics


def load_experiment(root, exp_id, patterns=(), with_data=True, present=None):
    """One experiment's files -> dict; problems are collected, never raised.
    with_data=False: what its state needs only (make status), no config or metrics.
    present: the names in its directory, when the caller has just listed it."""
    experiment = load_state(root, exp_id, present)
    experiment.update(config={}, metrics={}, data_problems=[])
    if with_data:
        experiment.update(load_data(experiment, patterns))
    experiment["problems"] = experiment["state_problems"] + experiment["data_problems"]
    return experiment


def load_state(root, exp_id, present=None):
    """What an experiment's state comes from: its metadata, the journal of its
    jobs, their records; "present": the names in its directory."""
    path = files.experiment_dir(root, exp_id)
    metadata, problem = files.read_json(os.path.join(path, "metadata.json"))
    if metadata is not None and not isinstance(metadata, dict):
        problem = "metadata.json: not a JSON object"
    unreadable = problem  # its jobs are unknown: its row says so rather than NEW
    problems = [problem] if problem else []
    if not isinstance(metadata, dict):
        metadata = {"jobs": []}
    ledger.with_journal(metadata, path)
    try:
        present = sorted(os.listdir(path)) if present is None else present
    except OSError as exc:
        present = []
        problems.append("experiments/{}: {}".format(exp_id, exc.strerror or exc))
    return {"id": exp_id, "path": path, "metadata": metadata, "records": files.run_records(path, problems),
            "present": present, "state_problems": problems, "unreadable": unreadable}


def load_data(experiment, patterns=()):
    """{"config", "metrics", "data_problems"} of an experiment load_state read."""
    path, metadata, problems = experiment["path"], experiment["metadata"], []
    config, problem = files.read_json(os.path.join(path, "config.json"))
    problems += [problem] if problem else []
    present = set(experiment["present"])
    metrics = {}
    for stage in STAGES:
        metrics.update(stage_metrics(path, present, metadata, stage, patterns, problems))
    return {"config": configs.flatten(config) if isinstance(config, dict) else {},
            "metrics": configs.flatten(metrics), "data_problems": problems}


def load_all(root, settings):
    patterns = metric_patterns(settings)
    return [load_experiment(root, exp_id, patterns) for exp_id in files.list_experiment_ids(root)]


def unsubmitted_state(experiment):
    """The state of an experiment with no job known: NEW, or UNKNOWN when its
    metadata.json cannot be read (its jobs, if any, are not known)."""
    return "UNKNOWN" if experiment.get("unreadable") else "NEW"


def warn_problems(experiments):
    """One WARNING line per experiment whose files could not all be read."""
    for experiment in experiments:
        if experiment["problems"]:
            files.warn("experiment {}: {}".format(experiment["id"], "; ".join(experiment["problems"])))


def latest_jobs(experiment):
    """[(stage, job, record)] for the newest job of each stage."""
    found = []
    for stage in STAGES:
        job = files.latest_job(experiment["metadata"], stage)
        if job:
            found.append((stage, job, experiment["records"].get((stage, str(job["job_id"])))))
    return found


# ----------------------------------------------------------------- asking the scheduler once

def needs_scheduler(job, record):
    """Files settle COMPLETED and FAILED; a cancelled record may really be a TIMEOUT
    or a requeue."""
    if job.get("backend") != "slurm" or not job.get("job_id"):
        return False
    return not record or record.get("state") not in ("COMPLETED", "FAILED")


def scheduler_view(job_ids, settings, env):
    """{job_id: slurmkit.JobInfo} from one sacct call (squeue when accounting is off
    or sacct fails); {} and a warning when the scheduler cannot be asked."""
    if not job_ids:
        return {}
    user = slurmkit.current_user()
    timeout = float(env.get("EXPFLOW_SLURM_TIMEOUT") or 30)
    if settings.get("SLURM_ACCOUNTING", "1") != "0":
        result = slurmkit.run_command(slurmkit.sacct_argv(job_ids), timeout=timeout)
        if result.ok:
            return slurmkit.parse_sacct(result.stdout)
        files.warn("sacct did not answer ({}); asking squeue".format(slurmkit.describe_failure(result)))
    result = slurmkit.run_command(slurmkit.squeue_argv(user), timeout=timeout)
    if result.ok:
        return slurmkit.parse_squeue(result.stdout)
    files.warn("squeue did not answer ({}); states come from the jobs' own records".format(
        slurmkit.describe_failure(result)))
    return {}


# ----------------------------------------------------------------- one job's state

def merged_job(job, record, info):
    """What we know of one job: scheduler final states win (TIMEOUT, NODE_FAIL),
    then the job's own final record, then the scheduler's live state. A record
    from an earlier run of a requeued job does not count against SLURM's state
    now (a run cut short by a requeue recorded CANCELLED; the job is PENDING)."""
    record = record or {}
    state = record.get("state", "")
    restarts = info.restarts if info else int(record.get("restart") or 0)
    earlier_run = info is not None and info.restarts > int(record.get("restart") or 0)
    if info and (info.state in slurmkit.FINAL_STATES or state not in slurmkit.FINAL_STATES or earlier_run):
        state = info.state
    if job.get("unresolved"):
        state = "SUBMITTING"  # sbatch's answer was lost: reconcile.py is still looking for the job
    elif not state:
        state = fallback_state(job)
    elif state == "RUNNING" and not info and job.get("backend") == "slurm":
        state = "UNKNOWN"  # not known to the scheduler, and the job never wrote its end
    elif state == "RUNNING" and job.get("backend") == "local" and not local_alive(job):
        state = "LOST"
    exit_code = record.get("exit_code")
    if exit_code is None and info and info.state in slurmkit.FINAL_STATES:
        exit_code = info.exit_code
    resources, allocated = job.get("resources", {}), record.get("allocated_gpus") or {}
    return {
        "job_id": str(job["job_id"]), "state": state, "cluster": job.get("cluster", ""),
        "exit_code": "" if exit_code is None else exit_code,
        "partition": (info and info.partition) or record.get("partition") or resources.get("partition", ""),
        "account": (info and info.account) or record.get("account") or resources.get("account", ""),
        "gpu_type": (info and info.gpu_type) or allocated.get("type") or resources.get("gpu_type", ""),
        "gpus": (info and info.gpus) or allocated.get("count") or resources.get("gpus", ""),
        "node": (info and info.node) or record.get("node", ""),
        "elapsed": elapsed(record, info),
        "submitted": job.get("submitted", ""), "started": record.get("started", ""),
        "ended": record.get("ended", ""), "reason": reason(job, record, info, state),
        "restarts": restarts, "history": list(info.history) if info else [],
    }


def reason(job, record, info, state):
    """Why a job waits or ended so. sacct fills in a pending job's reason only once
    the scheduler has looked at it; until then a job submitted with afterok is
    known to wait for its dependency."""
    if job.get("unresolved"):
        return "sbatch's answer was lost; looking for job {}".format(job.get("job_name", ""))
    restarts = info.restarts if info else int(record.get("restart") or 0)
    allowed = int(job.get("resources", {}).get("max_restarts") or 0)
    if state == "TIMEOUT" and allowed and restarts >= allowed:
        return "WARNING: no restart left (MAX_RESTARTS={}); make resume goes on from the checkpoints".format(allowed)
    # sacct keeps a restarted job's old BeginTime, and an ended job its last pending reason
    if info and info.reason and state != "RUNNING" and state not in slurmkit.FINAL_STATES:
        return info.reason
    if state == "PENDING" and job.get("after"):
        return "Dependency"
    return record.get("reason", "")


SUBMIT_GRACE_SECONDS = 600


def fallback_state(job):
    """No record and no scheduler answer: a local job still alive waits for its
    dependency; a fresh SLURM job may not have reached accounting yet (sacct
    lags sbatch by a moment)."""
    if job.get("backend") == "local":
        return "PENDING" if local_alive(job) else "LOST"
    submitted = parse_iso(job.get("submitted"))
    now = parse_iso(files.now_iso())
    if submitted and now and (now - submitted).total_seconds() < SUBMIT_GRACE_SECONDS:
        return "SUBMITTED"
    return "UNKNOWN"


def local_alive(job):
    return files.pid_alive(job.get("pid"))


ISO_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})")


def parse_iso(text):
    """The local time of "2026-11-28T10:00:01+00:00" (the offset is left out, as
    the records of one project share it); None for anything else. A regular
    expression: strptime is slow enough to show at 10,000 experiments."""
    match = ISO_TIME.match(text) if isinstance(text, str) else None
    try:
        return datetime(*map(int, match.groups())) if match else None
    except ValueError:
        return None


def elapsed(record, info):
    if info and info.elapsed:
        return info.elapsed
    start, end = parse_iso(record.get("started")), parse_iso(record.get("ended"))
    if start and not end and record.get("state") == "RUNNING":
        end = parse_iso(files.now_iso())
    return slurmkit.format_seconds((end - start).total_seconds()) if start and end else ""


def job_table(experiments, settings, env):
    """[(experiment, stage, merged job)] with one scheduler call for all of them
    (and one more, by job name, when a submission's answer was lost). Jobs of
    another cluster are not asked about: their records say what was last seen."""
    infos, here = settle_and_ask((), experiments, settings, env)
    return [(exp, stage, job) for exp in experiments for stage, job in merged_jobs(exp, infos, here)]


def settle_and_ask(asked, unsettled, settings, env):
    """(the scheduler's answer, in one call, about the jobs asked ((id, cluster)
    pairs, asked_jobs) and those of the experiments unsettled, each settled first
    (reconcile.py); here, which tells the cluster this is). A job of another
    cluster is not asked about, nor settled: only its own scheduler knows it."""
    here = profiles.LazyClusterHere(env)
    unsettled_jobs = [job for exp in unsettled for job in exp["metadata"].get("jobs", [])]
    reconcile.settle(unsettled, settings, env, profiles.cluster_of_jobs(unsettled_jobs, env))
    pairs = set(asked).union(*map(asked_jobs, unsettled))
    ids = {job_id for job_id, cluster in pairs if not profiles.on_other_cluster(cluster, here)}
    return scheduler_view(sorted(ids), settings, env), here


def asked_jobs(experiment):
    """{(job id, cluster it records or "")} the scheduler is asked about for this
    experiment: a sweep's task 44_3 is asked for as array 44 (sacct shows a
    pending task only that way)."""
    return {(str(job["job_id"]).split("_")[0], job.get("cluster", "")) for _, job, record in latest_jobs(experiment)
            if needs_scheduler(job, record)}


def merged_jobs(experiment, infos, here):
    """[(stage, merged job)] of an experiment's newest jobs, given the scheduler's
    answer; a job of another cluster from its records (elsewhere_job); a job
    waiting on a training that failed says so (explain_dependency)."""
    merged = [(stage, job, elsewhere_job(job, record) if profiles.on_other_cluster(job.get("cluster", ""), here)
               else merged_job(job, record, infos.get(str(job["job_id"]))))
              for stage, job, record in latest_jobs(experiment)]
    train = next((found for stage, _, found in merged if stage == "train"), None)
    for _stage, entry, found in merged:
        explain_dependency(entry, found, train)
    return [(stage, found) for stage, _, found in merged]


def elsewhere_job(job, record):
    """A job of another cluster, from its records alone: the state its run
    record last wrote (or SUBMITTED), marked "on greene, last seen ... at ..."."""
    record = record or {}
    job = dict(job, backend="elsewhere")  # neither asked of SLURM nor looked for among this host's processes
    merged = merged_job(job, record, None)
    merged["state"] = "SUBMITTING" if job.get("unresolved") else record.get("state") or "SUBMITTED"
    seen = record.get("ended") or record.get("started") or job.get("submitted", "")
    merged["reason"] = "on {}, last seen {} at {}".format(job["cluster"], merged["state"], seen or "?")
    return merged


def explain_dependency(entry, job, train):
    """A job submitted after its training (afterok, a sweep's aftercorr) whose
    training then ended otherwise than COMPLETED can never start: SLURM says
    only "Dependency" (sacct) or "DependencyNeverSatisfied" (squeue). Its
    REASON says which training and what SLURM does about it."""
    waits = entry.get("after") or entry.get("dependency")
    if not waits or train is None or entry.get("after") not in (None, train["job_id"]):
        return  # no dependency, or one on an earlier training than the newest
    if train["state"] not in slurmkit.FINAL_STATES or train["state"] == "COMPLETED":
        return
    cause = "train job {} ended {}".format(train["job_id"], train["state"])
    if job["state"] == "CANCELLED":
        job["reason"] = cause + ": cancelled by SLURM, its dependency can never be met"
    elif job["state"] == "PENDING" and entry.get("dependency"):  # submitted with --kill-on-invalid-dep
        job["reason"] = cause + ": SLURM cancels this job"
    elif job["state"] == "PENDING":  # submitted by an earlier release, which waits for ever
        job["reason"] = cause + ": this job never starts; make cancel it"


MAY_RUN_EXCEPT = frozenset(("NEW", "LOST"))


def may_still_run(job):
    """Whether SLURM (or this machine) may still run a job: anything not final,
    UNKNOWN and SUBMITTING included: not knowing is not knowing it ended."""
    return job["state"] not in slurmkit.FINAL_STATES and job["state"] not in MAY_RUN_EXCEPT


def describe_state(job):
    """"RUNNING (restart 2, after TIMEOUT, PREEMPTED)" for a job SLURM started again."""
    if not job.get("restarts"):
        return job["state"]
    after = ", after " + ", ".join(job["history"]) if job.get("history") else ""
    return "{} (restart {}{})".format(job["state"], job["restarts"], after)


