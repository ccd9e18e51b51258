# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make compare A=001 B=002 [C=...]: experiments side by side, differences only.

Standard library only, Python 3.6+.
"""

import os
import string
import sys

from . import comparison, files, harvest, profiles, state, tables

ROOT = files.ROOT


def chosen_ids(env):
    ids = [env[letter] for letter in string.ascii_uppercase if env.get(letter)]
    if len(ids) < 2:
        raise files.ProjectError("name two experiments or more: make compare A=001 B=002 [C=...]")
    for exp_id in ids:
        if not os.path.isdir(files.experiment_dir(ROOT, exp_id)):
            raise files.ProjectError("no experiment {}".format(exp_id))
    return ids


def load(ids, env):
    """The experiments and their result rows (one scheduler call for all)."""
    settings = profiles.project_settings(env)
    patterns = state.metric_patterns(settings)
    experiments = [state.load_experiment(ROOT, exp_id, patterns) for exp_id in ids]
    state.warn_problems(experiments)
    return experiments, harvest.result_rows(experiments, settings, env)


def cmd_compare(env):
    ids = chosen_ids(env)
    experiments, rows = load(ids, env)
    width = tables.terminal_width(env)
    for title, lines in comparison.comparison(experiments, rows):
        print("== " + title)
        if lines:
            sys.stdout.write(tables.wrapped_table(["key"] + ids, [[key] + cells for key, cells in lines], width))
        else:
            print("(no differences)")
        print()
    return 0
