# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Every experiment as one table: rows of status, params and metrics; FILTER,
SORT and COLUMNS; the files make results writes; the best runs by a metric.

Standard library only, Python 3.6+; used by make results, best, compare, report.
"""

import collections
import contextlib
import csv
import heapq
import io
import json
import math
import os

from . import configs, files, index, profiles, rowcache, state, tables, values

STATUS_COLUMNS = ["id", "sweep", "state", "exit_code", "eval_state", "cluster", "partition", "account", "gpu_type",
                  "gpus", "node", "job_id", "elapsed", "submitted", "started", "ended", "commit", "dirty"]


def result_rows(experiments, settings, env):
    """One dict per experiment (result_row), with one scheduler call for all."""
    jobs = collections.defaultdict(list)
    for exp, stage, job in state.job_table(experiments, settings, env):
        jobs[exp["id"]].append((stage, job))
    return [result_row(exp, jobs[exp["id"]]) for exp in experiments]


def result_row(exp, jobs):
    """An experiment's row: status fields of its training (eval_state of its
    evaluation), then "params" and "metrics" dicts, "warnings" and "swept" (the
    names a sweep point was swept over); jobs: [(stage, merged job)]
    (state.merged_jobs)."""
    train = files.latest_job(exp["metadata"], "train") or {}
    git = train.get("git") or {}
    row = {
        "id": exp["id"], "sweep": exp["metadata"].get("sweep", ""), "state": state.unsubmitted_state(exp),
        "commit": (git.get("commit") or "")[:8], "dirty": git.get("dirty", ""),
        "params": exp["config"], "metrics": exp["metrics"], "warnings": "; ".join(exp["problems"]),
        "swept": sorted(exp["metadata"].get("sweep_values") or ()),
    }
    for stage, job in jobs:
        if stage == "train":
            row.update((key, job[key]) for key in STATUS_COLUMNS if key in job)
        else:
            row["eval_state"] = job["state"]
    return row


@contextlib.contextmanager
def scheduled_entries(env, with_data=True):
    """(settings, index.Summary, entries, merged): every experiment brought up
    to date in the index (index.py: only those whose files changed are read
    again) and ONE scheduler answer; entries yields each index.Entry in id
    order, and merged(entry) gives (experiment, [(stage, merged job)]), so
    that 50,000 experiments are never all held at once, and one whose row is
    known already need not even be parsed. with_data=False: state only (make
    status)."""
    settings = profiles.project_settings(env)
    with index.snapshot(files.ROOT, settings, with_data) as (summary, view):
        patterns = state.metric_patterns(settings)
        unsettled = {i: state.load_experiment(files.ROOT, i, patterns, with_data) for i in summary.unresolved}
        infos, here = state.settle_and_ask(summary.asked, list(unsettled.values()), settings, env)

        def merged(entry):
            exp = unsettled.get(entry.id) or view.experiment(entry)
            return exp, state.merged_jobs(exp, infos, here)
        yield settings, summary, view.entries(), merged


@contextlib.contextmanager
def scheduled(env, with_data=True):
    """(settings, index.Summary, pairs): scheduled_entries, each entry merged:
    pairs yields (experiment, [(stage, merged job)]) in id order."""
    with scheduled_entries(env, with_data) as (settings, summary, entries, merged):
        yield settings, summary, (merged(entry) for entry in entries)


def result_columns(rows):
    """[(column, kind, key)]: status fields, then params, then metrics, each
    sorted (column_set says how names that clash are told apart)."""
    params = {key for row in rows for key in row["params"]}
    metrics = {key for row in rows for key in row["metrics"]}
    return column_set(params, metrics, any(row["warnings"] for row in rows))


def column_set(params, metrics, warnings):
    """[(column, kind, key)] from the names of the params and metrics: a param
    named like a status column is "config.<name>", a metric named like either
    "metric.<name>", so that no value ever takes the place of another."""
    status = set(STATUS_COLUMNS) | {"warnings"}
    columns = [(name, "status", name) for name in STATUS_COLUMNS]
    columns += [("config." + p if p in status else p, "params", p) for p in sorted(params)]
    columns += [("metric." + m if m in status or m in params else m, "metrics", m) for m in sorted(metrics)]
    if warnings:
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


def sort_rows(rows, spec, names):
    """SORT="-val_acc,id" over rows whose first item is their texts by column:
    numbers as numbers, text as text, empty cells last."""
    for column, descending in reversed(values.sort_keys(spec)):
        if column not in names:
            raise files.ProjectError("SORT: no column {!r}".format(column))
        filled = [r for r in rows if r[0][column] != ""]
        empty = [r for r in rows if r[0][column] == ""]
        numeric = all(as_number(r[0][column]) is not None for r in filled)
        filled.sort(key=lambda r: as_number(r[0][column]) if numeric else r[0][column], reverse=descending)
        rows = filled + empty
    return rows


def selected_columns(env):
    """COLUMNS=id,state,val_acc; a plain number is the terminal's width, which
    shells keep in the same variable (values.column_list)."""
    return values.column_list(env.get("COLUMNS", ""))


def view_spec(columns, env):
    """(names, FILTER conditions, header) of a view of rows with these columns."""
    names = [name for name, _, _ in columns]
    conditions = parse_filter(env.get("FILTER", ""), names)
    header = selected_columns(env) or names
    unknown = [c for c in header if c not in names]
    if unknown:
        raise files.ProjectError("COLUMNS: no column {}".format(", ".join(repr(c) for c in unknown)))
    return names, conditions, header


def view_rows(rows, columns, env):
    """(header, iterator of (cells as text, {column: typed value}, row)) after
    FILTER, SORT and COLUMNS: one row at a time, unless SORT needs them all."""
    names, conditions, header = view_spec(columns, env)

    def viewed():
        for row in rows:
            native = {name: native_value(row, kind, key) for name, kind, key in columns}
            text = {name: tables.format_value(value) for name, value in native.items()}
            if matches(text, conditions):
                yield text, native, row
    ordered = sort_rows(list(viewed()), env["SORT"], names) if env.get("SORT") else viewed()
    return header, (([text[c] for c in header], {c: native[c] for c in header}, row) for text, native, row in ordered)


def rendered_rows(env, columns, entries, merged, render, cache):
    """Every row as the files hold it (Rendered), in id order, after FILTER,
    SORT and COLUMNS, streamed. Without those, rows come from the cache
    (rowcache.py) when their entry's stamps did not change, and each row
    rendered that follows from its files alone is cached."""
    names, conditions, header = view_spec(columns, env)
    if conditions or env.get("SORT") or header != names:
        rows = (warned(result_row(*merged(entry))) for entry in entries)
        return (render(text, native, row["swept"]) for text, native, row in view_rows(rows, columns, env)[1])
    return cached_rows(entries, merged, columns, render, cache)


def cached_rows(entries, merged, columns, render, cache):
    """Each entry's row: Copied from the last results files when the cache
    has it, else rendered, with the stamps the cache is to keep it by
    (UNSETTLED when it does not follow from the files alone)."""
    for entry in entries:
        row = cache.take(entry)
        if row is None:
            exp, jobs = merged(entry)
            found = warned(result_row(exp, jobs))
            native = {name: native_value(found, kind, key) for name, kind, key in columns}
            row = render([tables.format_value(value) for value in native.values()], native, found["swept"])
            row = row._replace(id=entry.id, stamps=entry.stamps if rowcache.from_files_alone(exp) else index.UNSETTLED)
        yield row


def results_view(rows, env):
    """(header, table, natives) of rows held in memory: table holds the cells as
    text (CSV, Markdown), natives the typed values (JSON)."""
    header, viewed = view_rows(rows, result_columns(rows), env)
    viewed = list(viewed)
    return header, [text for text, _, _ in viewed], [native for _, native, _ in viewed]


def terminal_order(header, rows):
    """What a person looks at first: id and state, the metrics, then the rest."""
    return screen_order(header, result_columns(rows))


def screen_order(header, columns):
    """terminal_order given the columns (column_set) rather than the rows."""
    metrics = {name for name, kind, _ in columns if kind == "metrics"}
    first = [c for c in ("id", "state") if c in header] + [c for c in header if c in metrics]
    return first + [c for c in header if c not in first]


Rendered = collections.namedtuple("Rendered", "state metric csv md json cells swept id stamps")
Rendered.__new__.__defaults__ = (None, None)  # id and stamps: what the row cache keeps it by


class Renderer:
    """A row as the lines of the three result files and what the screen needs:
    its state and metric cells, its cells, the names it was swept over.
    Called with the row's cells as text (in the header's order) and its typed
    values (the JSON line's)."""

    def __init__(self, header, metric):
        self.state_at = header.index("state") if "state" in header else None
        self.metric_at = header.index(metric) if metric in header else None
        self.csv, self.line = csv.writer(self, lineterminator="\n"), ""

    def write(self, line):  # csv.writer's file: one row at a time
        self.line = line

    def __call__(self, text, native, swept=()):
        self.csv.writerow(text)
        return Rendered(text[self.state_at] if self.state_at is not None else None,
                        text[self.metric_at] if self.metric_at is not None else "",
                        self.line, tables.markdown_row(text), json_line(native), text, swept)


def result_heads(header):
    """What results.csv, .md and .json hold before their first row."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(header)
    return [text.getvalue().encode("utf-8"), tables.markdown_head(header).encode("utf-8"), b"["]


def write_results(header, rows, on_row=None, cache=None):
    """results/results.{csv,md,json} from rows, streamed, each file whole or
    not at all: Rendered rows as rendered, Copied ones (rowcache.py) copied
    from the last results files, those in a row at once; on_row(row) sees
    each row as written, and cache (a ResultsCache) the length of each."""
    out_dir = os.path.join(files.ROOT, "results")
    os.makedirs(out_dir, exist_ok=True)
    paths = rowcache.result_paths(files.ROOT)
    with files.atomic_file(paths[0], "wb") as csv_file, files.atomic_file(paths[1], "wb") as md_file, \
            files.atomic_file(paths[2], "wb") as json_file:
        outs = Spliced((csv_file, md_file, json_file), cache)
        for out, head in zip(outs.outs, result_heads(header)):
            out.write(head)
        for row in rows:
            if isinstance(row, rowcache.Copied):
                outs.copy(row)
            else:
                lengths = outs.write((row.csv.encode("utf-8"), row.md.encode("utf-8"), row.json.encode("utf-8")))
                if cache is not None:
                    cache.add(row, lengths)
            if on_row:
                on_row(row)
        outs.flush()
        json_file.write(b"\n]\n" if outs.rows else b"]\n")
        if cache is not None:
            cache.finish((csv_file, md_file, json_file))


class Spliced:
    """The three results files written from rows rendered and rows of the last
    ones: rows that follow each other there (in all three, and so in the last
    results.rows) are copied at once, with their lines of results.rows."""

    def __init__(self, outs, cache):
        self.outs, self.cache, self.rows = outs, cache, 0
        self.start = self.end = None  # of the run of copied rows pending, in each file

    def before(self):
        """What results.json holds before the next row."""
        self.rows += 1
        return b"\n" if self.rows == 1 else rowcache.JSON_SEPARATOR

    def write(self, texts):
        """texts: a row's bytes in each file -> their lengths."""
        self.flush()
        csv_file, md_file, json_file = self.outs
        csv_file.write(texts[0])
        md_file.write(texts[1])
        json_file.write(self.before())
        json_file.write(texts[2])
        return [len(text) for text in texts]

    def copy(self, row):
        """A Copied row: the run pending grows when it follows it in every file
        (results.json holds ",\n" between the two, as the new one will)."""
        at, end, lengths = row.at, self.end, row.lengths
        if end is not None and at[0] == end[0] and at[1] == end[1] and at[3] == end[3] \
                and at[2] == end[2] + len(rowcache.JSON_SEPARATOR):
            self.rows += 1
        else:
            self.flush()
            self.outs[2].write(self.before())
            self.start = at
        self.end = (at[0] + lengths[0], at[1] + lengths[1], at[2] + lengths[2], at[3] + lengths[3])

    def flush(self):
        if self.start is not None:
            for kind, out in enumerate(self.outs + (None,)):  # None: results.rows, which the cache writes
                self.cache.copy(kind, self.start[kind], self.end[kind], out)
        self.start = self.end = None


Harvest = collections.namedtuple("Harvest", "header table natives rows experiments settings")


def harvest(env):
    """Every experiment read, merged with one scheduler call, and viewed as a
    table, all held in memory (make best, make report; make results streams)."""
    with scheduled(env) as (settings, _summary, pairs):
        experiments, rows = [], []
        for exp, jobs in pairs:
            experiments.append(exp)
            rows.append(warned(result_row(exp, jobs)))
    header, table, natives = results_view(rows, env)
    return Harvest(header, table, natives, rows, experiments, settings)


def warned(row):
    if row["warnings"]:
        files.warn("experiment {}: {}".format(row["id"], row["warnings"]))
    return row


class Screen:
    """What make results prints of the rows it writes: the count of each state
    and at most limit rows (None: every one), the best first by the metric
    cell when ranked, else in the files' order; it holds at most limit rows."""

    def __init__(self, limit, ranked=False, mode="max"):
        self.limit, self.ranked, self.mode = limit, ranked, mode
        self.counts, self.total, self.kept = collections.Counter(), 0, []

    def add(self, row):
        self.total += 1
        if row.state is not None:
            self.counts[row.state] += 1
        if self.limit == 0:
            return
        value = as_number(row.metric) if self.ranked else None
        if value is None or not math.isfinite(value):
            item = (-1, -0.0, -self.total)  # negated: the heap's top is the worst row kept
        else:
            item = (0, value if self.mode == "max" else -value, -self.total)  # the best largest
        if self.limit is None or len(self.kept) < self.limit:
            heapq.heappush(self.kept, item + (cells_of(row),))
        elif item > self.kept[0]:  # -total tells any two apart: the cells are never compared
            heapq.heapreplace(self.kept, item + (cells_of(row),))

    def rows(self):
        return [item[3] for item in sorted(self.kept, reverse=True)]


def cells_of(row):
    """A row's cells as text: a Copied row (rowcache.py) has only its place in
    the last results.csv."""
    if isinstance(row, rowcache.Copied):
        return next(csv.reader(io.StringIO(row.source.read(row).decode("utf-8"))))
    return row.cells


# one encoder for every row (json.dumps with options builds one a call); rows are trees
STRICT_JSON = json.JSONEncoder(allow_nan=False, check_circular=False)


def json_line(row):
    """row as one line of JSON; NaN and infinities as null (JSON has no such numbers)."""
    try:
        return STRICT_JSON.encode(row)
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


