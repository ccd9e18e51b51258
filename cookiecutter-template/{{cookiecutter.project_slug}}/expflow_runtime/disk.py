# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make du and make prune-logs: what each experiment takes on disk (logs, run
records with their package lists, checkpoints) and moving the logs of finished
experiments off a quota-limited home directory. Nothing is ever deleted.

Standard library only, Python 3.6+.
"""

import os
import shutil
import sys
from datetime import datetime, timedelta

from . import files, profiles, slurmkit, state, tables

ROOT = files.ROOT
PARTS = ("logs", "runs", "checkpoints")


def tree_size(path):
    """Bytes under path, links not followed (a checkpoint link is counted apart)."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0
    if not os.path.isdir(path) or os.path.islink(path):
        return info.st_size
    total = 0
    for folder, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass  # gone meanwhile: a running job's temp file
    return total


def usage(exp_path):
    """{logs, runs, checkpoints, other, total} in bytes; checkpoints follow the
    experiment's link into scratch (where their bytes are)."""
    sizes = {part: tree_size(os.path.join(exp_path, part)) for part in ("logs", "runs")}
    checkpoints = os.path.join(exp_path, "checkpoints")
    sizes["checkpoints"] = tree_size(os.path.realpath(checkpoints)) if os.path.exists(checkpoints) else 0
    linked = os.path.islink(checkpoints)
    sizes["other"] = max(tree_size(exp_path) - sizes["logs"] - sizes["runs"] - (0 if linked else sizes["checkpoints"]),
                         0)
    sizes["total"] = sum(sizes[key] for key in ("logs", "runs", "checkpoints", "other"))
    sizes["scratch"] = linked
    return sizes


def human(size):
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return "{:.0f}{}".format(size, unit) if unit == "B" else "{:.1f}{}".format(size, unit)
        size /= 1024.0
    return ""


def cmd_du(env):
    exp_ids = [env["EXP"]] if env.get("EXP") else files.list_experiment_ids(ROOT)
    rows, sums = [], dict.fromkeys(("logs", "runs", "checkpoints", "other", "total"), 0)
    for exp_id in exp_ids:
        exp_path = files.experiment_dir(ROOT, exp_id)
        if not os.path.isdir(exp_path):
            raise files.ProjectError("no experiment {}".format(exp_id))
        sizes = usage(exp_path)
        for key in sums:
            sums[key] += sizes[key]
        rows.append([exp_id] + [human(sizes[key]) for key in ("logs", "runs", "checkpoints", "other", "total")]
                    + ["scratch" if sizes["scratch"] else "here"])
    sweeps = os.path.join(ROOT, "sweeps")
    for name in sorted(os.listdir(sweeps)) if os.path.isdir(sweeps) and not env.get("EXP") else []:
        logs = tree_size(os.path.join(sweeps, name, "logs"))
        sums["logs"] += logs
        sums["total"] += logs
        rows.append(["sweep " + name, human(logs), "", "", "", human(logs), "here"])
    rows.append(["total"] + [human(sums[key]) for key in ("logs", "runs", "checkpoints", "other", "total")] + [""])
    header = ["EXP", "LOGS", "RUNS", "CHECKPOINTS", "OTHER", "TOTAL", "CHECKPOINTS_ON"]
    sys.stdout.write(tables.plain_table(header, rows, tables.terminal_width(env) or 200))
    print("RUNS: run records and package lists (pip freeze); make prune-logs DEST=<dir> moves the logs of "
          "finished experiments")
    return 0


# ----------------------------------------------------------------- moving old logs

def finished_before(jobs, records, cutoff):
    """Every job of the experiment ended, the last one before cutoff (a datetime)."""
    if not jobs or any(job["state"] not in slurmkit.FINAL_STATES for job in jobs):
        return False
    ends = [state.parse_iso(job["ended"]) for job in jobs] + [state.parse_iso(r.get("ended")) for r in records]
    ends = [end for end in ends if end]
    return bool(ends) and max(ends) <= cutoff


def movable(exp_path):
    """The files make prune-logs moves: the logs and the package lists."""
    found = []
    for part, wanted in (("logs", lambda name: name != files.MOVED_NOTE), ("runs", lambda name: name.endswith(".txt"))):
        folder = os.path.join(exp_path, part)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            if wanted(name) and os.path.isfile(os.path.join(folder, name)):
                found.append(os.path.join(part, name))
    return found


def cmd_prune_logs(env):
    """Move the logs and package lists of experiments finished DAYS (30) days ago
    or more to DEST/<project>/<id>/, and say so in the experiment's logs/MOVED.txt."""
    dest = env.get("DEST", "")
    if not dest:
        raise files.ProjectError("DEST= names where the logs go (a directory off your home quota, e.g. project "
                                 "space; not a scratch directory that is purged); nothing moved")
    days = int(env.get("DAYS") or 30)
    cutoff = datetime.strptime(files.now_iso()[:19], "%Y-%m-%dT%H:%M:%S") - timedelta(days=days)
    settings = profiles.project_settings(env)  # the scheduler's settings of this cluster
    experiments = state.load_all(ROOT, settings)
    if env.get("EXP"):
        experiments = [exp for exp in experiments if exp["id"] == env["EXP"]]
        if not experiments:
            raise files.ProjectError("no experiment {}".format(env["EXP"]))
    jobs = {}
    for exp, _stage, job in state.job_table(experiments, settings, env):
        jobs.setdefault(exp["id"], []).append(job)
    project = settings.get("PROJECT_NAME") or os.path.basename(ROOT)
    moved = 0
    for exp in experiments:
        if not finished_before(jobs.get(exp["id"], []), list(exp["records"].values()), cutoff):
            continue
        names = movable(exp["path"])
        if names:
            target = os.path.join(os.path.abspath(dest), project, exp["id"])
            move_files(exp["path"], names, target, files.flag(env, "DRY_RUN"))
            moved += len(names)
    print("{}{} files of experiments finished {} days ago or more {} {}".format(
        "DRY_RUN: " if files.flag(env, "DRY_RUN") else "[OK] ", moved, days,
        "would move to" if files.flag(env, "DRY_RUN") else "moved to", os.path.abspath(dest)))
    return 0


def move_files(exp_path, names, target, dry_run):
    """Move names (relative to exp_path) under target. The note comes first, so
    that an interrupted run still says where the files went; each file goes to a
    .part name first and is renamed into place, so that an interrupted copy
    (another file system) leaves no half file under its own name, and a rerun
    finishes the job."""
    if not dry_run:
        note = os.path.join(exp_path, "logs", files.MOVED_NOTE)
        files.write_text_atomic(note, "make prune-logs moved this experiment's logs and package lists to {}\n"
                                .format(target))
    for name in names:
        source, destination = os.path.join(exp_path, name), os.path.join(target, name)
        print("  {} -> {}".format(files.display_path(source), destination))
        if dry_run:
            continue
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        if os.path.lexists(destination):
            raise files.ProjectError("{} already exists; nothing more moved".format(destination))
        shutil.move(source, destination + ".part")
        os.replace(destination + ".part", destination)
