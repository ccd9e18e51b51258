#!/usr/bin/env python3
"""make status, results and best: one table of every experiment.

Standard library only, Python 3.6+, run as `python3 -I`. Reads each
experiment's metadata, the records its jobs wrote, its config and metrics,
and asks the scheduler ONCE per call about the jobs whose outcome the files
do not settle (sacct, or squeue when accounting is off).

Metrics of a stage come from, later winning: the patterns METRIC_PATTERN* of
settings.env applied to the job's log (last match wins), then the stage's
results JSON, or, when there is none yet, the last line of its metrics JSONL.
"""

import collections
import csv
import io
import json
import os
import pwd
import re
import sys
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out

import projectlib as pl  # noqa: E402
import slurmkit  # noqa: E402
import tables  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("train", "eval")


# ----------------------------------------------------------------- reading experiments

def metric_patterns(settings):
    """The METRIC_PATTERN* settings, compiled; each needs named groups."""
    patterns = []
    for key in sorted(k for k in settings if k.startswith("METRIC_PATTERN") and settings[k]):
        try:
            pattern = re.compile(settings[key])
        except re.error as exc:
            raise pl.ProjectError("{}: not a regular expression: {}".format(key, exc)) from None
        if not pattern.groupindex:
            raise pl.ProjectError("{}: name the metric with a group, e.g. (?P<val_acc>[0-9.]+)".format(key))
        patterns.append(pattern)
    return patterns


def number_or_text(text):
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


def log_metrics(path, patterns):
    """Metrics a job printed, by the settings' patterns; the last match wins."""
    found = {}
    try:
        with open(path, errors="replace") as handle:
            for line in handle:
                for pattern in patterns:
                    for match in pattern.finditer(line):
                        found.update((k, number_or_text(v)) for k, v in match.groupdict().items() if v is not None)
    except OSError:
        pass
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
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return {}


def stage_metrics(path, present, metadata, stage, patterns, problems):
    """A stage's metrics; present is the set of file names in the experiment, so
    that files a stage has not written are not even tried (10,000s of them)."""
    metrics = {}
    job = pl.latest_job(metadata, stage)
    if patterns and job and job.get("log"):
        metrics.update(log_metrics(os.path.join(path, job["log"]), patterns))
    name, series = "{}_results.json".format(stage), "{}_metrics.jsonl".format(stage)
    results, problem = pl.read_json(os.path.join(path, name)) if name in present else (None, "")
    if problem:
        problems.append(problem)
    elif results is not None and not isinstance(results, dict):
        problems.append("{}: not a JSON object".format(name))
    elif results is not None:
        metrics.update(results)
    elif series in present:
        metrics.update(last_json_line(os.path.join(path, series)))
    return metrics


def load_experiment(root, exp_id, patterns=()):
    """One experiment's files -> dict; problems are collected, never raised."""
    path = pl.experiment_dir(root, exp_id)
    metadata, problem = pl.read_json(os.path.join(path, "metadata.json"))
    problems = [problem] if problem else []
    if not isinstance(metadata, dict):
        metadata = {"jobs": []}
    config, problem = pl.read_json(os.path.join(path, "config.json"))
    problems += [problem] if problem else []
    try:
        present = set(os.listdir(path))
    except OSError:
        present = set()
    metrics = {}
    for stage in STAGES:
        metrics.update(stage_metrics(path, present, metadata, stage, patterns, problems))
    return {
        "id": exp_id, "path": path, "metadata": metadata, "records": pl.run_records(path),
        "config": pl.flatten(config) if isinstance(config, dict) else {},
        "metrics": pl.flatten(metrics), "problems": problems,
    }


def load_all(root, settings):
    patterns = metric_patterns(settings)
    return [load_experiment(root, exp_id, patterns) for exp_id in pl.list_experiment_ids(root)]


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
        "job_id": str(job["job_id"]), "state": state, "exit_code": "" if exit_code is None else exit_code,
        "partition": (info and info.partition) or record.get("partition") or resources.get("partition", ""),
        "account": (info and info.account) or record.get("account") or resources.get("account", ""),
        "gpu_type": (info and info.gpu_type) or allocated.get("type") or resources.get("gpu_type", ""),
        "gpus": (info and info.gpus) or allocated.get("count") or resources.get("gpus", ""),
        "node": (info and info.node) or record.get("node", ""),
        "elapsed": elapsed(record, info),
        "submitted": job.get("submitted", ""), "started": record.get("started", ""),
        "ended": record.get("ended", ""), "reason": reason(job, record, info, state),
    }


def reason(job, record, info, state):
    """Why a job waits or ended so. sacct fills in a pending job's reason only once
    the scheduler has looked at it; until then a job submitted with afterok is
    known to wait for its dependency."""
    if info and info.reason:
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
    # a sweep's task 44_3 is asked for as array 44: sacct shows a pending task only that way
    ask = sorted({str(job["job_id"]).split("_")[0] for _, _, job, record in rows if needs_scheduler(job, record)})
    infos = scheduler_view(ask, settings, env)
    return [(exp, stage, merged_job(job, record, infos.get(str(job["job_id"])))) for exp, stage, job, record in rows]


# ----------------------------------------------------------------- status

STATUS_HEADER = ["EXP", "STAGE", "JOB", "STATE", "EXIT", "PARTITION", "GPU", "ELAPSED", "NODE", "REASON"]


def cmd_status(env):
    settings = pl.read_settings(ROOT)
    experiments = load_all(ROOT, settings)
    if env.get("SWEEP"):
        import sweep  # imported here: sweep.py builds on this module
        name = sweep.sweep_name(env["SWEEP"])  # a sweep, or its file (whose name: may differ)
        experiments = [exp for exp in experiments if exp["metadata"].get("sweep") == name]
    if not experiments:
        print("no experiments yet: make train EXP=001" if not env.get("SWEEP") else "no sweep " + env["SWEEP"])
        return 0
    rows, submitted = [], set()
    for exp, stage, job in job_table(experiments, settings, env):
        submitted.add(exp["id"])
        gpu = "{}x {}".format(job["gpus"], job["gpu_type"] or "gpu") if str(job["gpus"]) not in ("", "0") else ""
        rows.append([exp["id"], stage, job["job_id"], job["state"], job["exit_code"], job["partition"],
                     gpu, job["elapsed"], job["node"], job["reason"]])
    rows += [[exp["id"], "", "", "NEW", "", "", "", "", "", ""] for exp in experiments if exp["id"] not in submitted]
    rows.sort(key=lambda row: (row[0], row[1]))
    sys.stdout.write(tables.plain_table(STATUS_HEADER, rows, tables.terminal_width(env)))
    return 0


# ----------------------------------------------------------------- results

STATUS_COLUMNS = ["id", "sweep", "state", "exit_code", "eval_state", "partition", "account", "gpu_type", "gpus",
                  "node", "job_id", "elapsed", "submitted", "started", "ended", "commit", "dirty"]


def result_rows(experiments, settings, env):
    """One dict per experiment: status fields of its training (eval_state of its
    evaluation), then "params" and "metrics" dicts and "warnings"."""
    by_id = {}
    for exp in experiments:
        train = pl.latest_job(exp["metadata"], "train") or {}
        git = train.get("git") or {}
        by_id[exp["id"]] = {
            "id": exp["id"], "sweep": exp["metadata"].get("sweep", ""), "state": "NEW",
            "commit": (git.get("commit") or "")[:8], "dirty": git.get("dirty", ""),
            "params": exp["config"], "metrics": exp["metrics"], "warnings": "; ".join(exp["problems"]),
        }
    for exp, stage, job in job_table(experiments, settings, env):
        row = by_id[exp["id"]]
        if stage == "train":
            row.update((key, job[key]) for key in STATUS_COLUMNS if key in job)
        else:
            row["eval_state"] = job["state"]
    return [by_id[exp["id"]] for exp in experiments]


def result_columns(rows):
    """(header, [(column, kind, key)]): status fields, then params, then metrics,
    each sorted; a metric named like a param is prefixed "metric."."""
    params = sorted({key for row in rows for key in row["params"]})
    metrics = sorted({key for row in rows for key in row["metrics"]})
    clash = set(params) & set(metrics)
    columns = [(name, "status", name) for name in STATUS_COLUMNS]
    columns += [(name, "params", name) for name in params]
    columns += [("metric." + m if m in clash else m, "metrics", m) for m in metrics]
    if any(row["warnings"] for row in rows):
        columns.append(("warnings", "status", "warnings"))
    return columns


def native_value(row, kind, key):
    value = row.get(key, "") if kind == "status" else row[kind].get(key)
    return "" if value is None else value


def format_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "{:.6g}".format(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def as_number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


FILTER_RE = re.compile(r"^([^=!<>]+)(=|!=|>=|<=|>|<)(.*)$")


def parse_filter(text, names):
    """FILTER="state=COMPLETED optimizer.lr<0.1" -> [(column, op, value)]."""
    conditions = []
    for item in pl.split_keeping_quotes(text):
        match = FILTER_RE.match(item)
        if not match:
            raise pl.ProjectError("FILTER: expected column=value (or != < > <= >=), got {!r}".format(item))
        column, op, value = match.groups()
        if column not in names:
            raise pl.ProjectError("FILTER: no column {!r}".format(column))
        conditions.append((column, op, str(pl.parse_scalar(value)) if value else ""))
    return conditions


def matches(record, conditions):
    for column, op, wanted in conditions:
        have = record[column]
        left, right = as_number(have), as_number(wanted)
        if op in ("=", "!="):
            same = have == wanted or (left is not None and left == right)
            if same != (op == "="):
                return False
        elif left is None or right is None or not {
                ">": left > right, "<": left < right, ">=": left >= right, "<=": left <= right}[op]:
            return False
    return True


def sort_pairs(pairs, spec, names):
    """SORT="-val_acc,id" over (texts, natives) pairs: numbers as numbers, text as
    text, empty cells last."""
    for key in reversed([k for k in spec.split(",") if k]):
        descending, column = key.startswith("-"), key.lstrip("-+")
        if column not in names:
            raise pl.ProjectError("SORT: no column {!r}".format(column))
        filled = [p for p in pairs if p[0][column] != ""]
        empty = [p for p in pairs if p[0][column] == ""]
        numeric = all(as_number(p[0][column]) is not None for p in filled)
        filled.sort(key=lambda p: as_number(p[0][column]) if numeric else p[0][column], reverse=descending)
        pairs = filled + empty
    return pairs


def selected_columns(env):
    """COLUMNS=id,state,val_acc; a plain number is the terminal's width, which
    shells keep in the same variable."""
    value = env.get("COLUMNS", "")
    return "" if value.isdigit() else value


def results_view(rows, env):
    """(header, table, natives) after FILTER, SORT and COLUMNS: table holds the
    cells as text (CSV, Markdown), natives the typed values (JSON)."""
    columns = result_columns(rows)
    names = [name for name, _, _ in columns]
    pairs = []
    for row in rows:
        native = {name: native_value(row, kind, key) for name, kind, key in columns}
        pairs.append(({name: format_value(value) for name, value in native.items()}, native))
    conditions = parse_filter(env.get("FILTER", ""), names)
    pairs = sort_pairs([p for p in pairs if matches(p[0], conditions)], env.get("SORT", ""), names)
    header = [c for c in selected_columns(env).split(",") if c] or names
    unknown = [c for c in header if c not in names]
    if unknown:
        raise pl.ProjectError("COLUMNS: no column {}".format(", ".join(repr(c) for c in unknown)))
    table = [[text[c] for c in header] for text, _ in pairs]
    return header, table, [{c: native[c] for c in header} for _, native in pairs]


def terminal_order(header, rows):
    """What a person looks at first: id and state, the metrics, then the rest."""
    metrics = {name for name, kind, _ in result_columns(rows) if kind == "metrics"}
    first = [c for c in ("id", "state") if c in header] + [c for c in header if c in metrics]
    return first + [c for c in header if c not in first]


def write_text_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_results(header, table, natives):
    out_dir = os.path.join(ROOT, "results")
    os.makedirs(out_dir, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    write_text_atomic(os.path.join(out_dir, "results.csv"), buffer.getvalue())
    write_text_atomic(os.path.join(out_dir, "results.md"), tables.markdown(header, table))
    # one row a line: readable, and json's C encoder (indent= would use the slow Python one)
    rows = ",\n".join(json.dumps(row) for row in natives)
    write_text_atomic(os.path.join(out_dir, "results.json"), "[\n" + rows + "\n]\n" if rows else "[]\n")


Harvest = collections.namedtuple("Harvest", "header table natives rows experiments settings")


def harvest(env):
    """Every experiment read, merged with one scheduler call, and viewed as a table."""
    settings = pl.read_settings(ROOT)
    experiments = load_all(ROOT, settings)
    rows = result_rows(experiments, settings, env)
    for row in rows:
        if row["warnings"]:
            warn("experiment {}: {}".format(row["id"], row["warnings"]))
    header, table, natives = results_view(rows, env)
    return Harvest(header, table, natives, rows, experiments, settings)


def cmd_results(env):
    header, table, natives, rows = harvest(env)[:4]
    write_results(header, table, natives)
    order = terminal_order(header, rows)
    positions = [header.index(column) for column in order]
    shown = [[row[i] for i in positions] for row in table]
    sys.stdout.write(tables.fitted_markdown(order, shown, tables.terminal_width(env)))
    print("[OK] {} experiments -> results/results.csv, results/results.md, results/results.json".format(len(table)))
    return 0


# ----------------------------------------------------------------- best

def best_rows(rows, metric, mode, count):
    """The top rows by a metric (max or min); rows without it are left out."""
    scored = [(as_number(row["metrics"].get(metric)), row) for row in rows]
    scored = [(value, row) for value, row in scored if value is not None]
    scored.sort(key=lambda pair: pair[0], reverse=(mode == "max"))
    return [row for _, row in scored[:count]]


def differing_params(rows):
    keys = sorted({key for row in rows for key in row["params"]})
    return [k for k in keys if len({format_value(row["params"].get(k)) for row in rows}) > 1]


def primary_metric(env, settings):
    """(metric, mode): METRIC and MODE, else PRIMARY_METRIC and PRIMARY_MODE."""
    metric = env.get("METRIC") or settings.get("PRIMARY_METRIC", "")
    mode = (env.get("MODE") or settings.get("PRIMARY_MODE") or "max").lower()
    if mode not in ("max", "min"):
        raise pl.ProjectError("MODE={!r} is not max or min".format(mode))
    return metric, mode


def cmd_best(env):
    found = harvest(env)
    metric, mode = primary_metric(env, found.settings)
    count = env.get("N") or "5"
    if not metric:
        raise pl.ProjectError("name a metric: make best METRIC=val_acc (or set PRIMARY_METRIC in settings.env)")
    if not count.isdigit():
        raise pl.ProjectError("N={!r} is not a number".format(count))
    top = best_rows(found.rows, metric, mode, int(count))
    if not top:
        print("no experiment has metric {!r} yet".format(metric))
        return 0
    params = differing_params(top)
    header = ["rank", "id", metric, "state", "gpu_type"] + params
    table = [[rank, row["id"], format_value(row["metrics"][metric]), row.get("state", ""), row.get("gpu_type", "")]
             + [format_value(row["params"].get(p)) for p in params] for rank, row in enumerate(top, 1)]
    print("best {} by {} ({}):".format(len(top), metric, mode))
    sys.stdout.write(tables.plain_table(header, table, tables.terminal_width(env)))
    return 0


def main(argv=None, env=None):
    return pl.run_command_table({"status": cmd_status, "results": cmd_results, "best": cmd_best}, argv, env)


if __name__ == "__main__":
    sys.exit(main())
