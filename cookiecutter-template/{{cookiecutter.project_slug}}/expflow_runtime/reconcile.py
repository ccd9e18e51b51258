# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Settle the submissions whose outcome was never written down (sbatch answered
after its timeout, Ctrl-C or a crash between sbatch and the record, a full disk).

Each such intent carries a token in the job name SLURM shows, so ONE query by
name (sacct, or squeue without accounting) finds the jobs that were submitted
after all: they are adopted (their .job.json written). An intent that SLURM
still does not know ledger.unresolved_bound() seconds after it was written was
never submitted: it is voided. On the local backend the job's id is known
before it starts, so its own run record or log tells.

Standard library only, Python 3.6+.
"""

import os

from . import files, ledger, profiles, slurmkit


def unresolved(experiments, here=""):
    """[(experiment, job)] of every intent without an outcome, made on this
    cluster (here): only its own scheduler can settle one."""
    return [(exp, job) for exp in experiments for job in exp["metadata"].get("jobs", [])
            if job.get("unresolved") and not profiles.elsewhere(job, here)]


def settle(experiments, settings, env, here=""):
    """Adopt or void what can be settled now, in the experiments' metadata too;
    what cannot stays unresolved (shown as SUBMITTING)."""
    pending = unresolved(experiments, here)
    if not pending:
        return
    slurm_jobs = [(exp, job) for exp, job in pending if job.get("backend") == "slurm"]
    found = None
    if slurm_jobs:
        since = min(float(job.get("created_epoch") or 0) for _, job in slurm_jobs) - 3600
        found = jobs_by_name({job["job_name"] for _, job in slurm_jobs}, since, settings, env)
    for exp, job in pending:
        if job.get("backend") == "slurm":
            outcome = slurm_outcome(job, found)
        else:
            outcome = local_outcome(exp["path"], job)
        if outcome is not None:
            apply(exp["path"], job, outcome)
    for exp in experiments:
        exp["metadata"]["jobs"] = [job for job in exp["metadata"].get("jobs", []) if not job.get("void")]


def jobs_by_name(names, since, settings, env):
    """{job name: SLURM job id} for the names given (submitted after the epoch
    time since), from one query; None when the scheduler could not be asked
    (nothing is voided then)."""
    timeout = float(env.get("EXPFLOW_SLURM_TIMEOUT") or 30)
    if settings.get("SLURM_ACCOUNTING", "1") != "0":
        result = slurmkit.run_command(slurmkit.sacct_by_name_argv(sorted(names), since), timeout=timeout)
        if result.ok:
            return slurmkit.job_ids_by_name(slurmkit.parse_sacct(result.stdout))
    result = slurmkit.run_command(slurmkit.squeue_by_name_argv(slurmkit.current_user(), sorted(names)),
                                  timeout=timeout)
    if result.ok:
        return slurmkit.job_ids_by_name(slurmkit.parse_squeue(result.stdout))
    files.warn("could not ask SLURM about submissions whose answer was lost ({})".format(
        slurmkit.describe_failure(result)))
    return None


def slurm_outcome(job, found):
    """("job", {...}) to adopt, ("void", {...}) when never submitted, or None."""
    if found is None:
        return None
    job_id = found.get(job["job_name"])
    if job_id:
        if job.get("array_task") is not None:
            job_id = "{}_{}".format(job_id.split("_")[0], job["array_task"])
        return "job", {"job_id": job_id, "adopted": True, "submitted": job.get("created", ""),
                       "log": ledger.log_of(job, job_id)}
    if ledger.unresolved_age(job) > ledger.unresolved_bound():
        return "void", {"reason": "SLURM has no job named {}".format(job["job_name"])}
    return None


def local_outcome(exp_path, job):
    """A local job that started wrote its run record or its log."""
    started = [os.path.join(exp_path, files.log_name(job["stage"], job["job_id"])),
               files.run_record_path(exp_path, job["stage"], job["job_id"])]
    if any(os.path.exists(path) for path in started):
        record, _ = files.read_json(started[1])
        return "job", {"job_id": job["job_id"], "adopted": True, "submitted": job.get("created", ""),
                       "pid": (record or {}).get("pid", ""), "log": files.log_name(job["stage"], job["job_id"])}
    if ledger.unresolved_age(job) > ledger.unresolved_bound():
        return "void", {"reason": "the local job never started"}
    return None


def apply(exp_path, job, outcome):
    kind, data = outcome
    try:
        ledger.write_outcome(exp_path, job, kind, data)
    except (OSError, files.ProjectError) as exc:
        files.warn("{}: could not write down what happened to {} ({})".format(exp_path, job["job_name"], exc))
        return
    job.pop("unresolved", None)
    if kind == "job":
        job.update(data)
    else:
        job["void"] = True
