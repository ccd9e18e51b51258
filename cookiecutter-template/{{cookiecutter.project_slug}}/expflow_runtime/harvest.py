# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Every experiment as one table: rows of status, params and metrics; FILTER,
SORT and COLUMNS; the files make results writes; the best runs by a metric.

Standard library only, Python 3.6+; used by make results, best, compare, report.
"""

import collections
import csv
import io
import json
import math
import os

from . import configs, files, profiles, state, tables, values

STATUS_COLUMNS = ["id", "sweep", "state", "exit_code", "eval_state", "cluster", "partition", "account", "gpu_type",
                  "gpus", "node", "job_id", "elapsed", "submitted", "started", "ended", "commit", "dirty"]


def result_rows(experiments, settings, env):
    """One dict per experiment: status fields of its training (eval_state of its
    evaluation), then "params" and "metrics" dicts and "warnings"."""
    by_id = {}
    for exp in experiments:
        train = files.latest_job(exp["metadata"], "train") or {}
        git = train.get("git") or {}
        by_id[exp["id"]] = {
            "id": exp["id"], "sweep": exp["metadata"].get("sweep", ""), "state": state.unsubmitted_state(exp),
            "commit": (git.get("commit") or "")[:8], "dirty": git.get("dirty", ""),
            "params": exp["config"], "metrics": exp["metrics"], "warnings": "; ".join(exp["problems"]),
        }
    for exp, stage, job in state.job_table(experiments, settings, env):
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


def as_number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def parse_filter(text, names):
    """FILTER="state=COMPLETED optimizer.lr<0.1" -> [(column, op, value)]
    (values.filter_items says what an item may be)."""
    conditions = []
    for column, op, value in values.filter_items(text):
        if column not in names:
            raise files.ProjectError("FILTER: no column {!r}".format(column))
        wanted = configs.parse_scalar(value, "FILTER " + column) if value else ""
        conditions.append((column, op, tables.format_value(wanted) if not isinstance(wanted, str) else wanted))
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
    for column, descending in reversed(values.sort_keys(spec)):
        if column not in names:
            raise files.ProjectError("SORT: no column {!r}".format(column))
        filled = [p for p in pairs if p[0][column] != ""]
        empty = [p for p in pairs if p[0][column] == ""]
        numeric = all(as_number(p[0][column]) is not None for p in filled)
        filled.sort(key=lambda p: as_number(p[0][column]) if numeric else p[0][column], reverse=descending)
        pairs = filled + empty
    return pairs


def selected_columns(env):
    """COLUMNS=id,state,val_acc; a plain number is the terminal's width, which
    shells keep in the same variable (values.column_list)."""
    return values.column_list(env.get("COLUMNS", ""))


def results_view(rows, env):
    """(header, table, natives) after FILTER, SORT and COLUMNS: table holds the
    cells as text (CSV, Markdown), natives the typed values (JSON)."""
    columns = result_columns(rows)
    names = [name for name, _, _ in columns]
    pairs = []
    for row in rows:
        native = {name: native_value(row, kind, key) for name, kind, key in columns}
        pairs.append(({name: tables.format_value(value) for name, value in native.items()}, native))
    conditions = parse_filter(env.get("FILTER", ""), names)
    pairs = sort_pairs([p for p in pairs if matches(p[0], conditions)], env.get("SORT", ""), names)
    header = selected_columns(env) or names
    unknown = [c for c in header if c not in names]
    if unknown:
        raise files.ProjectError("COLUMNS: no column {}".format(", ".join(repr(c) for c in unknown)))
    table = [[text[c] for c in header] for text, _ in pairs]
    return header, table, [{c: native[c] for c in header} for _, native in pairs]


def terminal_order(header, rows):
    """What a person looks at first: id and state, the metrics, then the rest."""
    metrics = {name for name, kind, _ in result_columns(rows) if kind == "metrics"}
    first = [c for c in ("id", "state") if c in header] + [c for c in header if c in metrics]
    return first + [c for c in header if c not in first]


def write_results(header, table, natives):
    out_dir = os.path.join(files.ROOT, "results")
    os.makedirs(out_dir, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    files.write_text_atomic(os.path.join(out_dir, "results.csv"), buffer.getvalue())
    files.write_text_atomic(os.path.join(out_dir, "results.md"), tables.markdown(header, table))
    # one row a line: readable, and json's C encoder (indent= would use the slow Python one)
    rows = ",\n".join(json_line(row) for row in natives)
    files.write_text_atomic(os.path.join(out_dir, "results.json"), "[\n" + rows + "\n]\n" if rows else "[]\n")


Harvest = collections.namedtuple("Harvest", "header table natives rows experiments settings")


def harvest(env):
    """Every experiment read, merged with one scheduler call, and viewed as a table."""
    settings = profiles.project_settings(env)
    experiments = state.load_all(files.ROOT, settings)
    rows = result_rows(experiments, settings, env)
    for row in rows:
        if row["warnings"]:
            files.warn("experiment {}: {}".format(row["id"], row["warnings"]))
    header, table, natives = results_view(rows, env)
    return Harvest(header, table, natives, rows, experiments, settings)


def json_line(row):
    """row as one line of JSON; NaN and infinities as null (JSON has no such numbers)."""
    try:
        return json.dumps(row, allow_nan=False)
    except ValueError:
        return json.dumps(json_safe(row))


def json_safe(value):
    """value with every NaN and infinity (a float JSON cannot hold) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def best_states(env):
    """The states of training that make best ranks: STATE=COMPLETED by default,
    STATE=COMPLETED,RUNNING a list, STATE=all every experiment (None)."""
    wanted = [s.strip().upper() for s in (env.get("STATE") or "COMPLETED").split(",") if s.strip()]
    return None if "ALL" in wanted else frozenset(wanted)


def best_rows(rows, metric, mode, count, states=frozenset(("COMPLETED",))):
    """The top rows by a metric (max or min) among those whose training is in
    states (None: any); rows without the metric, or with NaN or an infinity
    there, are left out."""
    scored = [(as_number(row["metrics"].get(metric)), row) for row in rows
              if states is None or row.get("state") in states]
    scored = [(value, row) for value, row in scored if value is not None and math.isfinite(value)]
    scored.sort(key=lambda pair: pair[0], reverse=(mode == "max"))
    return [row for _, row in scored[:count]]


def differing_params(rows):
    keys = sorted({key for row in rows for key in row["params"]})
    return [k for k in keys if len({tables.format_value(row["params"].get(k)) for row in rows}) > 1]


def primary_metric(env, settings):
    """(metric, mode): METRIC and MODE, else PRIMARY_METRIC and PRIMARY_MODE."""
    metric = env.get("METRIC") or settings.get("PRIMARY_METRIC", "")
    mode = (env.get("MODE") or settings.get("PRIMARY_MODE") or "max").lower()
    if mode not in ("max", "min"):
        raise files.ProjectError("MODE={!r} is not max or min".format(mode))
    return metric, mode


