# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Learning curves from a stage's metrics JSONL, for make report and make plot.

A stage's curves are one table: a row per JSON line that holds a finite
number, its step and epoch (either may be missing) and each metric's value.
Past MAX_POINTS rows a curve is thinned for display (the lowest and highest
value of each stretch are kept, so spikes stay visible); the JSONL itself is
never changed. Standard library only, Python 3.6+.
"""

import json
import math

AXES = ("step", "epoch")
MAX_POINTS = 2000  # rows of one stage's curves in a report; more are thinned for display
LOG_HINTS = ("loss", "perplexity", "ppl", "mse", "nll")  # metrics drawn on a log scale when all positive


def finite(value):
    """A number a curve can show: not a bool, NaN or an infinity."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_stage(path):
    """A metrics JSONL -> {"step": [...], "epoch": [...], "metrics": {name: [...]}},
    one entry per line with a metric (None where that line lacks one). Bytes
    that are not UTF-8, damaged lines and NaN or infinite values are skipped."""
    table = {"step": [], "epoch": [], "metrics": {}}
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return table
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a line being written, or damaged: the rest still counts
        if not isinstance(record, dict):
            continue
        numbers = {k: v for k, v in record.items() if k not in AXES and finite(v)}
        if numbers:
            add_row(table, record, numbers)
    return table


def add_row(table, record, numbers):
    count = len(table["step"])
    for axis in AXES:
        table[axis].append(record[axis] if finite(record.get(axis)) else None)
    for name, value in numbers.items():
        table["metrics"].setdefault(name, [None] * count).append(value)
    for values in table["metrics"].values():
        if len(values) == count:
            values.append(None)


def points(table, name, axis="step"):
    """[(x, y)] of one metric: x the axis asked for, else the other, else the row."""
    xs = table[axis] if any(x is not None for x in table[axis]) else table[AXES[axis == "step"]]
    return [(index if xs[index] is None else xs[index], y)
            for index, y in enumerate(table["metrics"].get(name, [])) if y is not None]


def thinned_rows(table, limit=MAX_POINTS):
    """The rows to show: all up to limit; past it, per stretch of rows its first
    and those where each metric is lowest and highest (at most limit in all)."""
    count = len(table["step"])
    if count <= limit:
        return list(range(count))
    stretches = max(1, limit // (1 + 2 * len(table["metrics"])))
    size = -(-count // stretches)  # rows per stretch, rounded up
    keep = {count - 1}
    for start in range(0, count, size):
        keep.add(start)
        for values in table["metrics"].values():
            present = [i for i in range(start, min(count, start + size)) if values[i] is not None]
            if present:
                keep.add(min(present, key=values.__getitem__))
                keep.add(max(present, key=values.__getitem__))
    return sorted(keep)


def short_number(value):
    """value with 6 significant digits, as the results table shows it."""
    return value if value is None or isinstance(value, int) else float("{:.6g}".format(value))


def encoded_axis(values):
    """An axis for the page: {"start", "step", "count"} when evenly spaced (most
    are), else the list; None when no row has it."""
    if all(v is None for v in values):
        return None
    if len(values) > 2 and None not in values:
        step = values[1] - values[0]
        if all(b - a == step for a, b in zip(values, values[1:])):
            return {"start": values[0], "step": step, "count": len(values)}
    return [short_number(v) for v in values]


def for_page(table, limit=MAX_POINTS):
    """One stage's table as the report embeds it: thinned past limit, numbers
    with 6 significant digits, evenly spaced axes as three numbers."""
    rows = thinned_rows(table, limit)
    stage = {axis: encoded_axis([table[axis][i] for i in rows]) for axis in AXES}
    stage["metrics"] = {name: [short_number(values[i]) for i in rows] for name, values in table["metrics"].items()}
    return stage


def log_scale(name, tables):
    """Whether a metric is drawn on a log scale: a loss (by its name) whose every
    value is positive."""
    if not any(hint in name.lower() for hint in LOG_HINTS):
        return False
    return all(v is None or v > 0 for table in tables for v in table["metrics"].get(name, []))
