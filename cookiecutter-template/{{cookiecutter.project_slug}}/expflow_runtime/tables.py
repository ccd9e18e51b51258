# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Tables for people: Markdown files and terminal output fitted to its width.

Standard library only, Python 3.6+.
"""

import json
import math
import os
import sys

from . import values


def format_value(value):
    """A value as one cell of CSV or Markdown: floats as Python's repr, the
    shortest text that reads back as the same float; NaN and infinities, which
    are no result, are empty."""
    if type(value) is str:  # most cells: first, as a harvest formats 250,000 of them at 10,000 experiments
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def count(number, noun):
    """"1 experiment", "2 experiments": a count with its noun."""
    return "{} {}{}".format(number, noun, "" if number == 1 else "s")


def cell_text(value):
    return "" if value is None else str(value)


def markdown(header, rows):
    """A GitHub-style Markdown table; | and newlines in cells are escaped."""
    return markdown_head(header) + "".join(markdown_row(row) for row in rows)


def markdown_head(header):
    return markdown_row(header) + "|" + "---|" * len(header) + "\n"


def markdown_row(row):
    return "| " + " | ".join(markdown_cell(v) for v in row) + " |\n"


def markdown_cell(value):
    text = cell_text(value)
    return text.replace("|", "\\|").replace("\n", " ") if "|" in text or "\n" in text else text


def columns_that_fit(header, rows, width, padding):
    """How many leading columns fit in width characters (at least one)."""
    widths = [max([len(cell_text(h))] + [len(cell_text(r[i])) for r in rows]) for i, h in enumerate(header)]
    keep, used = 0, 0
    while keep < len(header) and (keep == 0 or used + widths[keep] + padding <= width):
        used += widths[keep] + padding
        keep += 1
    return keep, widths


def left_out_note(header, keep):
    if keep >= len(header):
        return ""
    return "({} more columns: {})\n".format(len(header) - keep, ", ".join(header[keep:]))


def wrapped_table(header, rows, width):
    """Aligned columns; those that do not fit in width follow in further blocks,
    each starting with the first column again: nothing is left out."""
    blocks, start = [], 1
    while True:
        part = [header[0]] + header[start:]
        keep, _ = columns_that_fit(part, [[r[0]] + r[start:] for r in rows], width or 10 ** 6, 2)
        keep = max(keep, 2) if len(part) > 1 else keep
        chosen = [0] + list(range(start, start + keep - 1))
        blocks.append(plain_table([header[i] for i in chosen], [[r[i] for i in chosen] for r in rows], 10 ** 6))
        start += keep - 1
        if start >= len(header):
            return "\n".join(blocks)


def plain_table(header, rows, width):
    """Aligned columns; columns that do not fit in width are left out and named."""
    keep, widths = columns_that_fit(header, rows, width, 2)
    lines = ["  ".join(cell_text(r[i]).ljust(widths[i]) for i in range(keep)).rstrip() for r in [header] + rows]
    return "\n".join(lines) + "\n" + left_out_note(header, keep)


def fitted_markdown(header, rows, width):
    """Markdown with as many leading columns as fit in width, the rest named."""
    keep, _ = columns_that_fit(header, rows, width, 3)
    return markdown(header[:keep], [row[:keep] for row in rows]) + left_out_note(header, keep)


def terminal_size(fallback=(120, 24)):
    """What shutil.get_terminal_size(fallback) says, COLUMNS and LINES of the
    environment first, without loading shutil (and the compression modules it
    loads) at every command's start."""
    wanted = []
    for name in ("COLUMNS", "LINES"):
        try:
            wanted.append(int(os.environ[name]))
        except (KeyError, ValueError):
            wanted.append(0)
    if min(wanted) <= 0:
        try:
            size = os.get_terminal_size(sys.__stdout__.fileno())
        except (AttributeError, ValueError, OSError):
            size = os.terminal_size(fallback)
        wanted = [have if have > 0 else (found or default) for have, found, default in zip(wanted, size, fallback)]
    return os.terminal_size(wanted)


def terminal_width(env):
    """COLUMNS when it is a width (values.terminal_width), else the terminal's."""
    return values.terminal_width(env) or terminal_size().columns


def row_limit(env):
    """How many rows a screen shows: LIMIT=, else what fits the terminal; None
    (every row) with ALL=1."""
    if env.get("ALL", "") not in ("", "0"):
        return None
    if env.get("LIMIT"):
        return values.whole_number("LIMIT", env["LIMIT"], minimum=0)
    return max(10, terminal_size().lines - 6)


def state_counts(counts, total, noun):
    """"1200 experiments: 1100 COMPLETED, 80 RUNNING, 20 FAILED", most first."""
    parts = ["{} {}".format(n, state or "(none)") for state, n in sorted(counts.items(), key=lambda i: (-i[1], i[0]))]
    return "{} {}{}".format(total, noun, ": " + ", ".join(parts) if parts else "")


def rows_left_out(shown, total, order):
    """The line under a screen that shows fewer rows than there are."""
    if shown >= total:
        return ""
    return "({} of {} rows shown, {}; LIMIT=N or ALL=1 shows more)\n".format(shown, total, order)
