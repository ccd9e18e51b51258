#!/usr/bin/env python3
"""make status and make results: one table of every experiment.

Standard library only, Python 3.6+, run as `python3 -I`. Reads each
experiment's metadata, the records its jobs wrote, its config and results,
and asks the scheduler ONCE per call about the jobs whose outcome the files
do not settle (sacct, or squeue when accounting is off).
"""

import csv
import io
import json
import os
import pwd
import shutil
import sys
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out

import projectlib as pl  # noqa: E402
import slurmkit  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("train", "eval")


# ----------------------------------------------------------------- reading experiments

def load_experiment(root, exp_id):
    """One experiment's files -> dict; problems are collected, never raised."""
    path = pl.experiment_dir(root, exp_id)
    metadata, problem = pl.read_json(os.path.join(path, "metadata.json"))
    problems = [problem] if problem else []
    if not isinstance(metadata, dict):
        metadata = {"jobs": []}
    config, problem = pl.read_json(os.path.join(path, "config.json"))
    problems += [problem] if problem else []
    metrics = {}
    for stage in STAGES:
        results, problem = pl.read_json(os.path.join(path, "{}_results.json".format(stage)))
        if problem:
            problems.append(problem)
        elif results is not None and not isinstance(results, dict):
            problems.append("{}_results.json: not a JSON object".format(stage))
        elif results:
            metrics.update(results)
    return {
        "id": exp_id, "path": path, "metadata": metadata, "records": pl.run_records(path),
        "config": pl.flatten(config) if isinstance(config, dict) else {},
        "metrics": pl.flatten(metrics), "problems": problems,
    }


def latest_jobs(experiment):
    """[(stage, job, record)] for the newest job of each stage."""
    found = []
    for stage in STAGES:
        job = pl.latest_job(experiment["metadata"], stage)
        if job:
            found.append((stage, job, experiment["records"].get((stage, str(job["job_id"])))))
    return found


# ----------------------------------------------------------------- asking the scheduler once

def needs_scheduler(job, record):
    """Files settle COMPLETED and FAILED; a cancelled record may really be a TIMEOUT."""
    if job.get("backend") != "slurm":
        return False
    return not record or record.get("state") not in ("COMPLETED", "FAILED")


def scheduler_view(job_ids, settings, env):
    """{job_id: slurmkit.JobInfo} from one sacct call (squeue when accounting is off
    or sacct fails); {} and a warning when the scheduler cannot be asked."""
    if not job_ids:
        return {}
    user = pwd.getpwuid(os.getuid()).pw_name
    timeout = float(env.get("EXPFLOW_SLURM_TIMEOUT") or 30)
    if settings.get("SLURM_ACCOUNTING", "1") != "0":
        result = slurmkit.run_command(slurmkit.sacct_argv(job_ids), timeout=timeout)
        if result.ok:
            return slurmkit.parse_sacct(result.stdout)
        warn("sacct did not answer ({}); asking squeue".format(slurmkit.describe_failure(result)))
    result = slurmkit.run_command(slurmkit.squeue_argv(user), timeout=timeout)
    if result.ok:
        return slurmkit.parse_squeue(result.stdout)
    warn("squeue did not answer ({}); states come from the jobs' own records".format(
        slurmkit.describe_failure(result)))
    return {}


def warn(message):
    print("WARNING: " + message, file=sys.stderr)


# ----------------------------------------------------------------- one job's state

def merged_job(job, record, info):
    """What we know of one job: scheduler final states win (TIMEOUT, NODE_FAIL),
    then the job's own final record, then the scheduler's live state."""
    record = record or {}
    state = record.get("state", "")
    if info and (info.state in slurmkit.FINAL_STATES or state not in slurmkit.FINAL_STATES):
        state = info.state
    if not state:
        state = fallback_state(job, record, info)
    elif state == "RUNNING" and not info and job.get("backend") == "slurm":
        state = "UNKNOWN"  # not known to the scheduler, and the job never wrote its end
    elif state == "RUNNING" and job.get("backend") == "local" and not local_alive(job):
        state = "LOST"
    exit_code = record.get("exit_code")
    if exit_code is None and info and info.state in slurmkit.FINAL_STATES:
        exit_code = info.exit_code
    resources, allocated = job.get("resources", {}), record.get("allocated_gpus") or {}
    return {
        "job_id": str(job["job_id"]), "state": state, "exit_code": "" if exit_code is None else exit_code,
        "partition": (info and info.partition) or record.get("partition") or resources.get("partition", ""),
        "account": (info and info.account) or record.get("account") or resources.get("account", ""),
        "gpu_type": (info and info.gpu_type) or allocated.get("type") or resources.get("gpu_type", ""),
        "gpus": (info and info.gpus) or allocated.get("count") or resources.get("gpus", ""),
        "node": (info and info.node) or record.get("node", ""),
        "elapsed": elapsed(record, info),
        "submitted": job.get("submitted", ""), "started": record.get("started", ""),
        "ended": record.get("ended", ""), "reason": (info and info.reason) or record.get("reason", ""),
    }


SUBMIT_GRACE_SECONDS = 600


def fallback_state(job, record, info):
    """No record and no scheduler answer: a local job still alive waits for its
    dependency; a fresh SLURM job may not have reached accounting yet (sacct
    lags sbatch by a moment)."""
    if job.get("backend") == "local":
        return "PENDING" if local_alive(job) else "LOST"
    submitted = parse_iso(job.get("submitted"))
    now = parse_iso(pl.now_iso())
    if submitted and now and (now - submitted).total_seconds() < SUBMIT_GRACE_SECONDS:
        return "SUBMITTED"
    return "UNKNOWN"


def local_alive(job):
    return pl.pid_alive(job.get("pid"))


def parse_iso(text):
    try:
        return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except (TypeError, ValueError):
        return None


def elapsed(record, info):
    if info and info.elapsed:
        return info.elapsed
    start, end = parse_iso(record.get("started")), parse_iso(record.get("ended"))
    if start and not end and record.get("state") == "RUNNING":
        end = parse_iso(pl.now_iso())
    return slurmkit.format_seconds((end - start).total_seconds()) if start and end else ""


def job_table(experiments, settings, env):
    """[(experiment, stage, merged job)] with one scheduler call for all of them."""
    rows = [(exp, stage, job, record) for exp in experiments for stage, job, record in latest_jobs(exp)]
    ask = [str(job["job_id"]) for _, _, job, record in rows if needs_scheduler(job, record)]
    infos = scheduler_view(ask, settings, env)
    return [(exp, stage, merged_job(job, record, infos.get(str(job["job_id"])))) for exp, stage, job, record in rows]


# ----------------------------------------------------------------- tables

def markdown(header, rows):
    def cell(value):
        return str(value).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plain_table(header, rows, width):
    """Aligned columns for the terminal; columns that do not fit are left out and
    counted in a last line."""
    texts = [[str(v) for v in row] for row in [header] + rows]
    widths = [max(len(r[i]) for r in texts) for i in range(len(header))]
    keep, used = 0, 0
    while keep < len(header) and used + widths[keep] + 2 <= max(width, widths[0] + 2):
        used += widths[keep] + 2
        keep += 1
    out = ["  ".join(r[i].ljust(widths[i]) for i in range(keep)).rstrip() for r in texts]
    if keep < len(header):
        out.append("({} more columns: {})".format(len(header) - keep, ", ".join(header[keep:])))
    return "\n".join(out) + "\n"


def terminal_width(env):
    if env.get("COLUMNS", "").isdigit():
        return int(env["COLUMNS"])
    return shutil.get_terminal_size((120, 24)).columns


STATUS_HEADER = ["EXP", "STAGE", "JOB", "STATE", "EXIT", "PARTITION", "GPU", "ELAPSED", "NODE", "REASON"]


def cmd_status(env):
    settings = pl.read_settings(ROOT)
    experiments = [load_experiment(ROOT, exp_id) for exp_id in pl.list_experiment_ids(ROOT)]
    if not experiments:
        print("no experiments yet: make train EXP=001")
        return 0
    rows, submitted = [], set()
    for exp, stage, job in job_table(experiments, settings, env):
        submitted.add(exp["id"])
        gpu = "{}x {}".format(job["gpus"], job["gpu_type"] or "gpu") if str(job["gpus"]) not in ("", "0") else ""
        rows.append([exp["id"], stage, job["job_id"], job["state"], job["exit_code"], job["partition"],
                     gpu, job["elapsed"], job["node"], job["reason"]])
    rows += [[exp["id"], "", "", "NEW", "", "", "", "", "", ""] for exp in experiments if exp["id"] not in submitted]
    rows.sort(key=lambda row: (row[0], row[1]))
    sys.stdout.write(plain_table(STATUS_HEADER, rows, terminal_width(env)))
    return 0


# ----------------------------------------------------------------- results

STATUS_COLUMNS = ["id", "state", "exit_code", "eval_state", "partition", "account", "gpu_type", "gpus",
                  "node", "job_id", "elapsed", "submitted", "started", "ended"]


def result_rows(experiments, settings, env):
    """One dict per experiment: status fields from train (eval_state from eval),
    then params, then metrics."""
    by_id = {exp["id"]: {"id": exp["id"], "state": "NEW"} for exp in experiments}
    for exp, stage, job in job_table(experiments, settings, env):
        row = by_id[exp["id"]]
        if stage == "train":
            row.update((key, job[key]) for key in STATUS_COLUMNS[1:] if key in job)
        else:
            row["eval_state"] = job["state"]
    for exp in experiments:
        by_id[exp["id"]].update(params=exp["config"], metrics=exp["metrics"], warnings="; ".join(exp["problems"]))
    return [by_id[exp["id"]] for exp in experiments]


def result_columns(rows):
    params = sorted({key for row in rows for key in row["params"]})
    metrics = sorted({key for row in rows for key in row["metrics"]})
    clash = set(params) & set(metrics)
    metric_names = [("metric." + m if m in clash else m, m) for m in metrics]
    return params, metric_names


def flat_table(rows):
    params, metric_names = result_columns(rows)
    header = STATUS_COLUMNS + params + [name for name, _ in metric_names]
    if any(row["warnings"] for row in rows):
        header.append("warnings")
    table = []
    for row in rows:
        values = [row.get(key, "") for key in STATUS_COLUMNS]
        values += [format_value(row["params"].get(key, "")) for key in params]
        values += [format_value(row["metrics"].get(key, "")) for _, key in metric_names]
        if header[-1] == "warnings":
            values.append(row["warnings"])
        table.append(values)
    return header, table


def format_value(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "{:.6g}".format(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def write_text_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as handle:
        handle.write(text)
    os.replace(tmp, path)


def cmd_results(env):
    settings = pl.read_settings(ROOT)
    experiments = [load_experiment(ROOT, exp_id) for exp_id in pl.list_experiment_ids(ROOT)]
    rows = result_rows(experiments, settings, env)
    for row in rows:
        if row["warnings"]:
            warn("experiment {}: {}".format(row["id"], row["warnings"]))
    header, table = flat_table(rows)
    out_dir = os.path.join(ROOT, "results")
    os.makedirs(out_dir, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    write_text_atomic(os.path.join(out_dir, "results.csv"), buffer.getvalue())
    write_text_atomic(os.path.join(out_dir, "results.md"), markdown(header, table))
    sys.stdout.write(plain_table(header, table, terminal_width(env)))
    print("[OK] {} experiments -> results/results.csv, results/results.md".format(len(rows)))
    return 0


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    commands = {"status": cmd_status, "results": cmd_results}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: harvest.py status | results", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](env)
    except pl.ProjectError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
