# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make report: results/report.html; make plot: PNG curves (with matplotlib).

The report is one self-contained file (inline CSS, inline SVG, a small inline
script to sort the table; no network, no framework), so it opens from a file
path on a laptop after rsync. Standard library only, Python 3.6+.
"""

import html
import io
import json
import math
import os

from . import comparison, files, harvest, state

ROOT = files.ROOT
MAX_CURVES = 100  # experiments with curves in one report; the best come first
AXIS_KEYS = ("step", "epoch")


# ----------------------------------------------------------------- learning curves

def finite(value):
    """A number a curve can show: not a bool, NaN or an infinity."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_series(path):
    """A metrics JSONL -> {metric: [(x, y)]}, x the step (or epoch, or line number).
    Bytes that are not UTF-8, damaged lines and NaN or infinite values are skipped."""
    series = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return series
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a line being written, or damaged: the rest still counts
        if not isinstance(record, dict):
            continue
        x = next((record[k] for k in AXIS_KEYS if finite(record.get(k))), number)
        for key, value in record.items():
            if key not in AXIS_KEYS and finite(value):
                series.setdefault(key, []).append((x, value))
    return series


def svg_curve(name, points, width=320, height=150, left=52, right=16, top=24, bottom=22):
    """One metric as an inline SVG line chart with its range on the axes."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x_span, y_span = (x1 - x0) or 1, (y1 - y0) or 1
    base = height - bottom

    def place(x, y):
        return left + (x - x0) / x_span * (width - left - right), base - (y - y0) / y_span * (base - top)

    path = " ".join("{:.1f},{:.1f}".format(*place(x, y)) for x, y in points)
    return (
        '<svg class="curve" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{n}">'
        '<text x="{l}" y="14" class="title">{n}</text>'
        '<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" class="axis"/>'
        '<line x1="{l}" y1="{t}" x2="{l}" y2="{b}" class="axis"/>'
        '<text x="{l}" y="{lb}" class="tick">{x0:g}</text><text x="{r}" y="{lb}" class="tick end">{x1:g}</text>'
        '<text x="{tl}" y="{b}" class="tick end">{y0:.4g}</text>'
        '<text x="{tl}" y="{tt}" class="tick end">{y1:.4g}</text>'
        '<polyline points="{p}" class="line"/></svg>'
    ).format(w=width, h=height, l=left, r=width - right, b=base, t=top, tt=top + 4, lb=height - 6, tl=left - 4,
             n=html.escape(name), x0=x0, x1=x1, y0=y0, y1=y1, p=path)


def curves_section(experiments, order):
    parts, shown = [], 0
    for exp_id in order:
        if shown == MAX_CURVES:
            parts.append("<p>Curves of {} more experiments are left out.</p>".format(len(order) - shown))
            break
        experiment = experiments[exp_id]
        charts = []
        for stage in state.STAGES:
            series = read_series(os.path.join(experiment["path"], "{}_metrics.jsonl".format(stage)))
            charts += [svg_curve(name if stage == "train" else stage + " " + name, points)
                       for name, points in sorted(series.items()) if points]
        if charts:
            shown += 1
            parts.append('<section class="exp" id="curves-{0}"><h3>{0}</h3>{1}</section>'.format(
                html.escape(exp_id), "".join(charts)))
    return "\n".join(parts) or "<p>No experiment has written metrics (EXPFLOW_METRICS) yet.</p>"


# ----------------------------------------------------------------- tables

def html_table(header, rows, table_id="", sortable=False):
    head = "".join("<th>{}</th>".format(html.escape(str(h))) for h in header)
    body = "\n".join("<tr>" + "".join("<td>{}</td>".format(html.escape(str(v))) for v in row) + "</tr>"
                     for row in rows)
    attributes = (' id="{}"'.format(table_id) if table_id else "") + (' class="sortable"' if sortable else "")
    return '<div class="scroll"><table{}><thead><tr>{}</tr></thead><tbody>\n{}\n</tbody></table></div>'.format(
        attributes, head, body)


def results_table(found):
    """The results in the order a person reads them: id, state, metrics, the rest."""
    order = harvest.terminal_order(found.header, found.rows)
    positions = [found.header.index(column) for column in order]
    return html_table(order, [[row[i] for i in positions] for row in found.table], "results", sortable=True)


def best_section(experiments, rows, metric, mode, states):
    top = harvest.best_rows(rows, metric, mode, 5, states) if metric else []
    if len(top) < 2:
        return "<p>Fewer than two experiments have the metric {} yet.</p>".format(html.escape(metric or "(none)"))
    ids = [row["id"] for row in top]
    parts = ["<p>The {} best by {} ({}).</p>".format(len(top), html.escape(metric), mode)]
    for title, lines in comparison.comparison([experiments[i] for i in ids], top):
        parts.append("<h3>{}</h3>".format(html.escape(title)))
        parts.append(html_table(["key"] + ids, [[key] + cells for key, cells in lines]) if lines
                     else "<p>(no differences)</p>")
    return "\n".join(parts)


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; }
table.sortable th { cursor: pointer; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
.curve { margin: 4px 8px 4px 0; background: #fafafa; border: 1px solid #ddd; }
.curve .line { fill: none; stroke: #1f77b4; stroke-width: 2; }
.curve .axis { stroke: #999; }
.curve text { font-size: 10px; fill: #555; }
.curve .title { font-size: 12px; fill: #222; }
.curve .end { text-anchor: end; }
section.exp h3 { margin: 1em 0 0; }
"""

# Sorting by a click on a header: numbers as numbers, empty cells last.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var cell = function (row) { return row.cells[column].textContent; };
      var numeric = rows.every(function (r) { return cell(r) === "" || !isNaN(Number(cell(r))); });
      rows.sort(function (a, b) {
        var x = cell(a), y = cell(b);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def render(env):
    found = harvest.harvest(env)
    metric, mode = harvest.primary_metric(env, found.settings)
    experiments = {exp["id"]: exp for exp in found.experiments}
    order = [row["id"] for row in harvest.best_rows(found.rows, metric, mode, len(found.rows), None)] if metric else []
    order += [row["id"] for row in found.rows if row["id"] not in order]
    title = "{} results".format(found.settings.get("PROJECT_NAME") or os.path.basename(ROOT))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>{}</title><style>{}</style></head><body>".format(html.escape(title), STYLE),
        "<h1>{}</h1><p>{} experiments, written {} by make report.</p>".format(
            html.escape(title), len(found.table), html.escape(files.now_iso())),
        "<h2>Results</h2>", results_table(found),
        "<h2>Best runs</h2>", best_section(experiments, found.rows, metric, mode, harvest.best_states(env)),
        "<h2>Learning curves</h2>", curves_section(experiments, order),
        "<script>{}</script></body></html>".format(SCRIPT),
    ])


def cmd_report(env):
    page = render(env)
    os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
    files.write_text_atomic(os.path.join(ROOT, "results", "report.html"), page)
    print("[OK] results/report.html ({} KB): open it in a browser".format(len(page) // 1024 + 1))
    return 0


# ----------------------------------------------------------------- PNG plots

def cmd_plot(env):
    metric = harvest.primary_metric(env, files.read_settings(ROOT))[0]  # METRIC, else PRIMARY_METRIC
    if not metric:
        raise files.ProjectError("name a metric: make plot METRIC=loss (or set PRIMARY_METRIC in settings.env)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise files.ProjectError("matplotlib is not importable here; make report draws the curves without it") from None
    figure, axes = plt.subplots(figsize=(8, 5))
    drawn = 0
    for exp_id in files.list_experiment_ids(ROOT):
        for stage in state.STAGES:
            points = read_series(os.path.join(files.experiment_dir(ROOT, exp_id), stage + "_metrics.jsonl")).get(metric)
            if points:
                axes.plot([p[0] for p in points], [p[1] for p in points], label="{} {}".format(exp_id, stage))
                drawn += 1
    if not drawn:
        raise files.ProjectError("no experiment has written metric {!r} to its metrics JSONL".format(metric))
    axes.set_xlabel("step")
    axes.set_ylabel(metric)
    axes.legend(fontsize="small")
    path = os.path.join(ROOT, "results", "plot-{}.png".format(metric.replace("/", "_")))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    files.write_bytes_atomic(path, image.getvalue())
    print("[OK] {} curves -> {}".format(drawn, os.path.relpath(path, ROOT)))
    return 0
