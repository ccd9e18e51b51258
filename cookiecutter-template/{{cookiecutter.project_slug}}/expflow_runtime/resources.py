# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make resources and make check: where can a job start now, and may it go there?

Standard library only, Python 3.6+. make check runs sbatch --test-only on the
command line make train would submit: SLURM's own answer, and nothing is
submitted. The view itself is advice.py, which expflow shares.
"""

import collections
import sys

from . import advice, environment, files, ledger, profiles, slurmkit, submit, tables

ROOT = files.ROOT


def command_timeout(env):
    return float(env.get("EXPFLOW_SLURM_TIMEOUT") or 30)


def effective_resources(settings, env):
    """(exp_id, exp_path, resources) as make train would use them: the project's
    settings (profiles.project_settings) < EXP's own settings.env < the command
    line. No EXP: the project's."""
    exp_id = env.get("EXP", "")
    if not exp_id:
        return "", "", submit.resolve_resources(settings, {}, env)
    exp_path = files.experiment_dir(ROOT, exp_id)
    return exp_id, exp_path, submit.resolve_resources(settings, files.read_settings(exp_path, missing_ok=True), env)


def refresh_access(user, nodes, timeout, cluster):
    """Check every account of the user (sacctmgr) on every partition sinfo listed."""
    result = slurmkit.run_command(slurmkit.sacctmgr_assoc_argv(user), timeout=timeout)
    accounts = slurmkit.parse_sacctmgr_accounts(result.stdout, cluster) if result.ok else []
    partitions = list(collections.OrderedDict.fromkeys(node.partition for node in nodes))
    return advice.probe_access(user, accounts, partitions, cluster=cluster)


def cmd_resources(env):
    user, timeout = slurmkit.current_user(), command_timeout(env)
    settings = profiles.project_settings(env)
    _, _, resources = effective_resources(settings, env)  # PARTITION and GPU_TYPE are checked here
    # this cluster (its profile's CLUSTER, where there are profiles): its accounts, not its neighbours'
    cluster = settings.get("CLUSTER", "")
    nodes, jobs, warnings = advice.query_cluster(timeout=timeout)
    access = advice.read_access(ROOT, user, cluster)
    if files.flag(env, "REFRESH"):
        access = refresh_access(user, nodes, timeout, cluster)
        try:
            advice.write_access(ROOT, access)
        except OSError as exc:
            raise files.ProjectError("cannot write {}: {}".format(advice.ACCESS_FILE, exc.strerror)) from None
    # Only a PARTITION or GPU_TYPE given on the command line narrows the table: the
    # project's own settings are the request, not a filter.
    request = advice.make_request(resources, env.get("PARTITION", ""))
    report = advice.build_report(nodes, jobs, user, request, access, env.get("GPU_TYPE", ""), warnings)
    for warning in warnings:
        files.warn(warning)
    if files.flag(env, "JSON"):
        sys.stdout.write(advice.render_json(report))
    else:
        sys.stdout.write(advice.render_text(report, tables.terminal_width(env), " (make resources REFRESH=1)"))
    return 0


def check_argv(exp_id, exp_path, resources):
    """make train's own sbatch command line, with --test-only."""
    job_name = ledger.job_name(exp_id, "train", ledger.new_token())
    job_env = dict(submit.job_environment(1), **submit.limits_environment(resources))
    argv = submit.sbatch_argv("train", job_name, exp_path, resources, None, job_env)
    return argv[:1] + ["--test-only"] + argv[1:]


def check_environment(settings):
    """The job's environment (settings.env's ENV_*), checked here before the queue wait."""
    found = environment.problems(settings)
    if found:
        raise files.ProjectError("the job's environment would not set up: " + "; ".join(found))
    named = [key for key in environment.KEYS if settings.get(key)]
    print("[OK] the job's environment sets up ({})".format(", ".join(named) if named else "none named in settings.env"))


def cmd_check(env):
    settings = profiles.project_settings(env)
    exp_id, exp_path, resources = effective_resources(settings, env)
    what = "experiment " + exp_id if exp_id else "the project's settings"
    check_environment(settings)
    backend, why = submit.resolve_backend(settings, env)
    if backend != "slurm":
        print("[OK] nothing to check for {}: jobs run on this machine ({})".format(what, why))
        return 0
    argv = check_argv(exp_id or "check", exp_path or files.experiment_dir(ROOT, "check"), resources)
    outcome = advice.check_outcome(slurmkit.run_command(argv, timeout=command_timeout(env)))
    described = submit.describe(resources, backend)
    described += ", account " + resources["account"] if resources["account"] else ", your default account"
    if not outcome["ok"]:
        raise files.ProjectError("SLURM would refuse {} ({}): {}".format(what, described, advice.explain_refusal_of(
            outcome["reason"], resources, exp_path, env)))
    if submit.mail_warning(resources):
        files.warn(submit.mail_warning(resources))
    print("[OK] SLURM accepts {} ({}): it would start at {} on {}; nothing was submitted".format(
        what, described, outcome["start"] or "a time it did not say", outcome["nodes"] or "a node it did not say"))
    return 0
