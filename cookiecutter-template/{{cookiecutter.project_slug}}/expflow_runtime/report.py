# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make report: results/report.html; make plot: the same curves as PNG (matplotlib).

The report is one self-contained file that works offline after rsync: the
data as one JSON blob, and the page's own CSS and JavaScript (report_assets/,
small and hand-written) inlined. It shows an overview (states, the best runs,
failures with their logs' last lines), every metric's curves with runs
overlaid, a view of each sweep, and the table with the FILTER syntax of make
results. Standard library only, Python 3.6+.
"""

import collections
import html
import io
import json
import os
import string

from . import comparison, curves, files, harvest, state

ROOT = files.ROOT
ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report_assets")
BEST_COUNT = 5
FAILURES_SHOWN = 20  # failures listed with their log's last lines; the rest are counted
LOG_LINES, LOG_BYTES, LOG_LINE_CHARS = 10, 16384, 300  # the last lines of a log, bounded
LINES_SHOWN = 20  # runs drawn on each chart until the reader asks for more (the table's first)
CURVE_RUNS = 2000  # runs whose curves the page holds, the best first; the file stays small
ROW_BUDGET = 300000  # rows of all curves in one page: past it each run's curves are thinned more
ALWAYS_SHOWN = ("id", "state")
SHOWN_WHEN_FILLED = ("sweep", "exit_code", "elapsed")
# Okabe and Ito's colour-blind-safe palette, in light and dark mode (its yellow last on white)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
PALETTE_DARK = ("#56B4E9", "#E69F00", "#009E73", "#F0E442", "#CC79A7", "#D55E00", "#0072B2", "#E8E8E8")


# ----------------------------------------------------------------- the table

def page_columns(found, swept, env):
    """[{"name", "kind", "shown"}]: id and state, the swept parameters, the
    metrics, the other parameters, then how it ran; shown by default what
    varies (COLUMNS= names them instead)."""
    kinds = {name: kind for name, kind, _ in harvest.result_columns(found.rows)}
    order = list(ALWAYS_SHOWN) + [p for p in swept if p in kinds]
    for kind in ("metrics", "params", "status"):
        order += [c for c in found.header if kinds.get(c, "status") == kind and c not in order]
    wanted = harvest.selected_columns(env)
    unknown = [c for c in wanted if c not in order]
    if unknown:
        raise files.ProjectError("COLUMNS: no column {}".format(", ".join(repr(c) for c in unknown)))
    cells = {name: [row[i] for row in found.table] for i, name in enumerate(found.header)}

    def shown(name):
        if wanted:
            return name in wanted
        kind = kinds.get(name, "status")
        return (name in ALWAYS_SHOWN or name in swept or kind == "metrics"
                or (kind == "params" and len(set(cells[name])) > 1)
                or (name in SHOWN_WHEN_FILLED and any(cells[name])))

    return [{"name": name, "kind": kinds.get(name, "status"), "shown": shown(name)} for name in order]


def swept_params(rows, experiments):
    """{sweep: its swept parameters}, from each point's recorded values."""
    sweeps = collections.OrderedDict()
    for row in rows:
        if row.get("sweep"):
            point = experiments[row["id"]]["metadata"].get("sweep_values")
            keys = sweeps.setdefault(row["sweep"], set())
            keys.update(point if isinstance(point, dict) else ())
    return collections.OrderedDict((name, sorted(keys)) for name, keys in sweeps.items())


# ----------------------------------------------------------------- the overview

def log_tail(path):
    """The last LOG_LINES lines of a log, each cut at LOG_LINE_CHARS, read from
    its last LOG_BYTES (a log may be gigabytes)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_BYTES))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError as exc:
        return ["({})".format(exc.strerror or exc)]
    if size > LOG_BYTES:
        lines = lines[1:]  # the first is probably cut
    return [line[:LOG_LINE_CHARS] + (" [...]" if len(line) > LOG_LINE_CHARS else "") for line in lines[-LOG_LINES:]]


def failure(row, experiment):
    job = files.latest_job(experiment["metadata"], "train") or {}
    log = os.path.join(experiment["path"], job["log"]) if job.get("log") else ""
    return {"id": row["id"], "state": row.get("state", ""), "exit_code": str(row.get("exit_code", "")),
            "elapsed": str(row.get("elapsed", "")), "log": os.path.relpath(log, ROOT) if log else "",
            "tail": log_tail(log) if log else []}


def best_runs(rows, experiments, metric, mode, env):
    top = harvest.best_rows(rows, metric, mode, BEST_COUNT, harvest.best_states(env)) if metric else []
    compared = comparison.comparison([experiments[row["id"]] for row in top], top) if len(top) > 1 else []
    return {"metric": metric, "mode": mode, "ids": [row["id"] for row in top],
            "compare": [[title, [[key, cells] for key, cells in lines]] for title, lines in compared]}


def overview(rows, experiments, metric, mode, env):
    failed = [row for row in rows if row.get("state") in state.RESUMABLE]
    return {
        "states": collections.Counter(row.get("state", "") for row in rows).most_common(),
        "best": best_runs(rows, experiments, metric, mode, env),
        "failures": [failure(row, experiments[row["id"]]) for row in failed[:FAILURES_SHOWN]],
        "failures_left_out": max(0, len(failed) - FAILURES_SHOWN),
    }


# ----------------------------------------------------------------- curves

def curve_name(stage, metric):
    return metric if stage == "train" else "{} {}".format(stage, metric)


def read_curves(experiments, ids):
    """{id: {stage: table}} of the experiments that wrote metrics."""
    found = {}
    for exp_id in ids:
        for stage in state.STAGES:
            table = curves.read_stage(os.path.join(experiments[exp_id]["path"], "{}_metrics.jsonl".format(stage)))
            if table["metrics"]:
                found.setdefault(exp_id, {})[stage] = table
    return found


def charts(tables, metric):
    """[{"name", "stage", "metric", "log"}], the primary metric's first."""
    names = sorted({(stage != "train", curve_name(stage, m), stage, m)
                    for by_stage in tables.values() for stage, table in by_stage.items() for m in table["metrics"]})
    names.sort(key=lambda n: (n[1] != metric, n[0], n[1]))
    return [{"name": name, "stage": stage, "metric": m,
             "log": curves.log_scale(m, [t[stage] for t in tables.values() if stage in t])}
            for _, name, stage, m in names]


def page_curves(tables):
    """The curves as the page embeds them, thinned further when they are many."""
    stages = sum(len(by_stage) for by_stage in tables.values())
    limit = max(100, min(curves.MAX_POINTS, ROW_BUDGET // max(1, stages)))
    return {exp_id: {stage: curves.for_page(table, limit) for stage, table in by_stage.items()}
            for exp_id, by_stage in tables.items()}


# ----------------------------------------------------------------- the page

def page_rows(found, env):
    """(rows, ids, sort): the page's experiments after FILTER and SORT, and how
    the page sorts them first (best first by the metric unless SORT is given)."""
    ids = [row[found.header.index("id")] for row in found.table]
    by_id = {row["id"]: row for row in found.rows}
    metric, mode = harvest.primary_metric(env, found.settings)
    sort = None
    if metric in found.header and not env.get("SORT"):
        sort = {"column": metric, "descending": mode == "max"}
    return [by_id[i] for i in ids], ids, sort


def best_first(rows, ids, sort):
    """ids as the page first orders them: the best by the metric, then the rest."""
    if not sort:
        return ids
    mode = "max" if sort["descending"] else "min"
    ranked = [row["id"] for row in harvest.best_rows(rows, sort["column"], mode, len(rows), None)]
    return list(collections.OrderedDict.fromkeys(ranked + ids))


def report_data(env):
    found = harvest.harvest(dict(env, COLUMNS=""))  # every column; COLUMNS says which are shown
    metric, mode = harvest.primary_metric(env, found.settings)
    experiments = {exp["id"]: exp for exp in found.experiments}
    rows, ids, sort = page_rows(found, env)
    sweeps = swept_params(rows, experiments)
    columns = page_columns(found, [p for params in sweeps.values() for p in params], env)
    position = {name: i for i, name in enumerate(found.header)}
    tables = read_curves(experiments, best_first(rows, ids, sort)[:CURVE_RUNS])
    return {
        "title": "{} results".format(found.settings.get("PROJECT_NAME") or os.path.basename(ROOT)),
        "written": files.now_iso(), "primary": {"metric": metric, "mode": mode}, "sort": sort,
        "columns": columns, "rows": [[row[position[c["name"]]] for c in columns] for row in found.table],
        "overview": overview(rows, experiments, metric, mode, env),
        "sweeps": [{"name": name, "params": params} for name, params in sweeps.items()],
        "charts": charts(tables, metric), "curves": page_curves(tables), "lines_shown": LINES_SHOWN,
        "curves_left_out": max(0, len(ids) - CURVE_RUNS),
    }


def asset(name):
    with open(os.path.join(ASSETS, name), encoding="utf-8") as handle:
        return handle.read()


def palette_css():
    def block(colours):
        return " ".join("--c{}: {};".format(i, c) for i, c in enumerate(colours))
    return ":root { %s }\n@media (prefers-color-scheme: dark) { :root { %s } }\n" % (
        block(PALETTE), block(PALETTE_DARK))


def render(env):
    data = report_data(env)
    # "<" escaped: no "</script>" or "<!--" in a value can end the data block early
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return string.Template(asset("report.html")).substitute(
        title=html.escape(data["title"]), css=palette_css() + asset("report.css"), data=blob,
        script=asset("report.js"))


def cmd_report(env):
    page = render(env)
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    files.write_text_atomic(os.path.join(ROOT, "results", "report.html"), page)
    print("[OK] results/report.html ({} KB): open it in a browser".format(len(page) // 1024 + 1))
    return 0


# ----------------------------------------------------------------- PNG plots

def pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise files.ProjectError("matplotlib is not importable here; make report draws the curves without it") from None
    return plt


def plot_chart(plt, chart, tables, ids):
    """One PNG as the report draws the chart: the runs overlaid, x by step."""
    figure, axes = plt.subplots(figsize=(8, 5))
    drawn = 0
    for exp_id in ids:
        table = tables.get(exp_id, {}).get(chart["stage"])
        line = curves.points(table, chart["metric"]) if table else []
        if line:
            axes.plot([p[0] for p in line], [p[1] for p in line], label=exp_id, color=PALETTE[drawn % len(PALETTE)],
                      linestyle=("-", "--", ":")[drawn // len(PALETTE) % 3], linewidth=1.5)
            drawn += 1
    if chart["log"]:
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel(chart["name"])
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", ncol=2 if drawn > 10 else 1)
    image = io.BytesIO()
    figure.tight_layout()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    return drawn, image.getvalue()


def cmd_plot(env):
    """make plot: each metric's chart of the report (METRIC= one), the runs the
    report draws first: the first LINES_SHOWN after FILTER and SORT, best first."""
    plt = pyplot()
    found = harvest.harvest(dict(env, COLUMNS=""))
    rows, ids, sort = page_rows(found, dict(env, METRIC=""))  # METRIC names the chart here, not the ranking
    ids = best_first(rows, ids, sort)
    experiments = {exp["id"]: exp for exp in found.experiments}
    tables = read_curves(experiments, ids[:LINES_SHOWN])
    wanted = [c for c in charts(tables, sort and sort["column"]) if not env.get("METRIC") or c["name"] == env["METRIC"]]
    if not wanted:
        raise files.ProjectError("no experiment has written metric {!r} to its metrics JSONL".format(
            env.get("METRIC")) if env.get("METRIC") else "no experiment has written metrics (EXPFLOW_METRICS) yet")
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    for chart in wanted:
        drawn, png = plot_chart(plt, chart, tables, ids[:LINES_SHOWN])
        path = os.path.join(ROOT, "results", "plot-{}.png".format(chart["name"].replace("/", "_").replace(" ", "-")))
        files.write_bytes_atomic(path, png)
        print("[OK] {} curves -> {}".format(drawn, os.path.relpath(path, ROOT)))
    return 0
