# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make status, results and best: one table of every experiment.

Standard library only, Python 3.6+.
"""

import collections
import os
import sys

from . import files, harvest, rowcache, state, sweepspec, tables, values

# ----------------------------------------------------------------- status

STATUS_HEADER = ["EXP", "STAGE", "JOB", "STATE", "EXIT", "PARTITION", "GPU", "ELAPSED", "NODE", "REASON"]
UNFINISHED, FAILED, SETTLED = range(3)  # the order make status shows rows in


StatusRows = collections.namedtuple("StatusRows", "counted sweep rows problems")


def status_of(exp, jobs):
    """StatusRows of an experiment: the state its training counts as, its
    sweep, its rows (one per job, else one of its own), each with the job's
    state last, and the problems of its state files."""
    unsubmitted = state.unsubmitted_state(exp)
    rows = []
    for stage, job in jobs:
        gpu = "{}x {}".format(job["gpus"], job["gpu_type"] or "gpu") if str(job["gpus"]) not in ("", "0") else ""
        rows.append([exp["id"], stage, job["job_id"], state.describe_state(job), job["exit_code"], job["partition"],
                     gpu, job["elapsed"], job["node"], job["reason"], job["state"]])
    if not jobs:
        rows.append([exp["id"], "", "", unsubmitted, "", "", "", "", "", exp.get("unreadable", ""), unsubmitted])
    counted = dict(jobs)["train"]["state"] if "train" in dict(jobs) else unsubmitted
    return StatusRows(counted, exp["metadata"].get("sweep", ""), rows, exp["state_problems"])


def statuses(entries, merged, cache):
    """StatusRows of every entry, from the cache when its stamps did not change."""
    for entry in entries:
        found = cache.take(entry)
        if found is None:
            exp, jobs = merged(entry)
            found = status_of(exp, jobs)
            if rowcache.from_files_alone(exp):
                cache.keep(entry, found)
        yield entry.id, found


def status_rank(row):
    """Jobs that may still run first, then those that failed, then the rest
    (completed, new), each by id and stage; row: a status row, its job's state last."""
    job_state = row[-1]
    if state.may_still_run({"state": job_state}):
        group = UNFINISHED
    elif job_state in state.RESUMABLE:
        group = FAILED
    else:
        group = SETTLED
    return group, row[0], row[1]


def cmd_status(env):
    name = sweepspec.sweep_name(env["SWEEP"]) if env.get("SWEEP") else ""  # a sweep, or its file
    exp_id = env.get("EXP", "")
    counts, rows = collections.Counter(), []
    with harvest.scheduled_entries(env, with_data=False) as (settings, _summary, entries, merged):
        key = rowcache.cache_key(settings, "status")
        with rowcache.RowCache(os.path.join(files.ROOT, rowcache.STATUS_FILE), key, StatusRows) as cache:
            for found_id, found in statuses(entries, merged, cache):
                if (not name or found.sweep == name) and (not exp_id or found_id == exp_id):
                    if found.problems:
                        files.warn("experiment {}: {}".format(found_id, "; ".join(found.problems)))
                    counts[found.counted] += 1
                    rows += found.rows
    rows.sort(key=status_rank)
    if exp_id and not rows:
        raise files.ProjectError("no experiment {} (make list shows them)".format(exp_id))
    if not rows:
        print("no experiments yet: make train EXP=001" if not env.get("SWEEP") else "no sweep " + env["SWEEP"])
        return 0
    shown = [row[:-1] for row in rows[:tables.row_limit(env)]]
    print(tables.state_counts(counts, sum(counts.values()), "experiments"))
    sys.stdout.write(tables.plain_table(STATUS_HEADER, shown, tables.terminal_width(env)))
    sys.stdout.write(tables.rows_left_out(len(shown), len(rows), "unfinished and failed first"))
    return 0


def swept_first(order, swept):
    """A sweep's swept parameters right after id and state, before the metrics:
    what tells its rows apart must not hide behind "(22 more columns ...)"."""
    first = [c for c in order if c in ("id", "state")]
    first += sorted(c for c in order if c in swept)
    return first + [c for c in order if c not in first]


def cmd_results(env):
    swept = set()  # the swept parameters of every sweep point, gathered as the rows stream by

    def shown(row):
        if row.swept:
            swept.update(row.swept)
        screen.add(row)

    with harvest.scheduled_entries(env) as (settings, summary, entries, merged):
        columns = harvest.column_set(summary.params, summary.metrics, summary.warnings)
        header = harvest.view_spec(columns, env)[2]
        metric, mode = harvest.primary_metric(env, settings)
        best_first = metric in header and not env.get("SORT")
        screen = harvest.Screen(tables.row_limit(env), best_first, mode)
        key = rowcache.cache_key(settings, columns, metric)
        path = os.path.join(files.ROOT, rowcache.ROWS_FILE)
        with rowcache.ResultsCache(path, key, harvest.result_heads(header)) as cache:
            rows = harvest.rendered_rows(env, columns, entries, merged, harvest.Renderer(header, metric), cache)
            harvest.write_results(header, rows, shown, cache)
    order = swept_first(harvest.screen_order(header, columns), swept)
    positions = [header.index(column) for column in order]
    shown = [[row[i] for i in positions] for row in screen.rows()]
    print(tables.state_counts(screen.counts, screen.total, "experiments"))
    sys.stdout.write(tables.fitted_markdown(order, shown, tables.terminal_width(env)))
    sys.stdout.write(tables.rows_left_out(len(shown), screen.total, "the best by {} first".format(metric)
                                          if best_first else "in the files' order"))
    print("[OK] {} -> results/results.csv, results/results.md, results/results.json".format(
        tables.count(screen.total, "experiment")))
    return 0


def cmd_best(env):
    found = harvest.harvest(env)
    metric, mode = harvest.primary_metric(env, found.settings)
    count = values.whole_number("N", env.get("N") or "5")
    if not metric:
        raise files.ProjectError("name a metric: make best METRIC=val_acc (or set PRIMARY_METRIC in settings.env)")
    states = harvest.best_states(env)
    top = harvest.best_rows(found.rows, metric, mode, count, states)
    if not top:
        among = " among {} experiments (STATE=all ranks every one)".format(",".join(sorted(states))) if states else ""
        print("no experiment has metric {!r} yet{}".format(metric, among))
        return 0
    params = harvest.differing_params(top)
    header = ["rank", "id", metric, "state", "gpu_type"] + params
    table = [[rank, row["id"], tables.format_value(row["metrics"][metric]), row.get("state", ""),
              row.get("gpu_type", "")] + [tables.format_value(row["params"].get(p)) for p in params]
             for rank, row in enumerate(top, 1)]
    print("best {} by {} ({}):".format(len(top), metric, mode))
    sys.stdout.write(tables.plain_table(header, table, tables.terminal_width(env)))
    return 0


