#!/usr/bin/env python3
"""make compare A=001 B=002 [C=...]: experiments side by side, differences only.

Three sections: the config keys that differ, the metrics, and what differs in
how they ran (GPU type, node, partition, commit, dirty tree, Python, and the
package versions that differ between their environment snapshots). Standard
library only, Python 3.6+; report.py shows the same sections in HTML.
"""

import os
import string
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out

import harvest  # noqa: E402
import projectlib as pl  # noqa: E402
import tables  # noqa: E402

ROOT = harvest.ROOT


def train_record(experiment):
    job = pl.latest_job(experiment["metadata"], "train")
    if job is None:
        return None, {}
    return job, experiment["records"].get(("train", str(job["job_id"]))) or {}


def packages(experiment):
    """{name: version} from the training job's package list (pip freeze or conda)."""
    _, record = train_record(experiment)
    listing = (record.get("packages") or {}).get("file")
    found = {}
    if not listing:
        return found
    try:
        with open(os.path.join(experiment["path"], listing)) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return found
    for line in lines:
        if line and not line.startswith("#"):
            name, _, version = line.replace("==", "=").partition("=")
            found[name.strip().lower()] = version.split("=")[0].strip() or line
    return found


def how_it_ran(experiment, row):
    job, record = train_record(experiment)
    git = (job or {}).get("git") or {}
    return {
        "gpu_type": row.get("gpu_type", ""), "gpus": row.get("gpus", ""), "node": row.get("node", ""),
        "partition": row.get("partition", ""), "commit": (git.get("commit") or "")[:8],
        "dirty": harvest.format_value(git.get("dirty", "")), "python": record.get("python", ""),
    }


def differing(values_by_exp, only_differences=True):
    """[(key, [value per experiment])] for keys whose values differ."""
    keys = sorted({key for values in values_by_exp for key in values})
    rows = []
    for key in keys:
        cells = [harvest.format_value(values.get(key, "")) for values in values_by_exp]
        if not only_differences or len(set(cells)) > 1:
            rows.append((key, cells))
    return rows


def comparison(experiments, rows):
    """[(section title, [(key, [value per experiment])])]."""
    ran = [how_it_ran(exp, row) for exp, row in zip(experiments, rows)]
    package_rows = [("package " + key, cells) for key, cells in differing([packages(exp) for exp in experiments])]
    return [
        ("config (keys that differ)", differing([row["params"] for row in rows])),
        ("metrics", differing([row["metrics"] for row in rows], only_differences=False)),
        ("how they ran (what differs)", differing(ran) + package_rows),
    ]


def chosen_ids(env):
    ids = [env[letter] for letter in string.ascii_uppercase if env.get(letter)]
    if len(ids) < 2:
        raise pl.ProjectError("name two experiments or more: make compare A=001 B=002 [C=...]")
    for exp_id in ids:
        if not os.path.isdir(pl.experiment_dir(ROOT, exp_id)):
            raise pl.ProjectError("no experiment {}".format(exp_id))
    return ids


def load(ids, env):
    """The experiments and their result rows (one scheduler call for all)."""
    settings = pl.read_settings(ROOT)
    patterns = harvest.metric_patterns(settings)
    experiments = [harvest.load_experiment(ROOT, exp_id, patterns) for exp_id in ids]
    return experiments, harvest.result_rows(experiments, settings, env)


def cmd_compare(env):
    ids = chosen_ids(env)
    experiments, rows = load(ids, env)
    width = tables.terminal_width(env)
    for title, lines in comparison(experiments, rows):
        print("== " + title)
        if lines:
            sys.stdout.write(tables.plain_table(["key"] + ids, [[key] + cells for key, cells in lines], width))
        else:
            print("(no differences)")
        print()
    return 0


def main(argv=None, env=None):
    return pl.run_command_table({"compare": cmd_compare}, argv, env)


if __name__ == "__main__":
    sys.exit(main())
