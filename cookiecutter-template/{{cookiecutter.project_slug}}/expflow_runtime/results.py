# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""make status, results and best: one table of every experiment.

Standard library only, Python 3.6+.
"""

import sys

from . import files, harvest, state, sweepspec, tables, values

# ----------------------------------------------------------------- status

STATUS_HEADER = ["EXP", "STAGE", "JOB", "STATE", "EXIT", "PARTITION", "GPU", "ELAPSED", "NODE", "REASON"]


def cmd_status(env):
    settings = files.read_settings(files.ROOT)
    experiments = state.load_all(files.ROOT, settings)
    if env.get("SWEEP"):
        name = sweepspec.sweep_name(env["SWEEP"])  # a sweep, or its file (whose name: may differ)
        experiments = [exp for exp in experiments if exp["metadata"].get("sweep") == name]
    if env.get("EXP"):
        experiments = [exp for exp in experiments if exp["id"] == env["EXP"]]
        if not experiments:
            raise files.ProjectError("no experiment {} (make list shows them)".format(env["EXP"]))
    if not experiments:
        print("no experiments yet: make train EXP=001" if not env.get("SWEEP") else "no sweep " + env["SWEEP"])
        return 0
    state.warn_problems(experiments)
    rows, submitted = [], set()
    for exp, stage, job in state.job_table(experiments, settings, env):
        submitted.add(exp["id"])
        gpu = "{}x {}".format(job["gpus"], job["gpu_type"] or "gpu") if str(job["gpus"]) not in ("", "0") else ""
        rows.append([exp["id"], stage, job["job_id"], state.describe_state(job), job["exit_code"], job["partition"],
                     gpu, job["elapsed"], job["node"], job["reason"]])
    rows += [[exp["id"], "", "", state.unsubmitted_state(exp), "", "", "", "", "", exp.get("unreadable", "")]
             for exp in experiments if exp["id"] not in submitted]
    rows.sort(key=lambda row: (row[0], row[1]))
    sys.stdout.write(tables.plain_table(STATUS_HEADER, rows, tables.terminal_width(env)))
    return 0


def swept_first(order, experiments):
    """A sweep's swept parameters right after id and state, before the metrics:
    what tells its rows apart must not hide behind "(22 more columns ...)"."""
    swept = {key for exp in experiments for key in exp["metadata"].get("sweep_values") or {}}
    first = [c for c in order if c in ("id", "state")]
    first += sorted(c for c in order if c in swept)
    return first + [c for c in order if c not in first]


def cmd_results(env):
    found = harvest.harvest(env)
    header, table, natives, rows = found[:4]
    harvest.write_results(header, table, natives)
    order = swept_first(harvest.terminal_order(header, rows), found.experiments)
    positions = [header.index(column) for column in order]
    shown = [[row[i] for i in positions] for row in table]
    sys.stdout.write(tables.fitted_markdown(order, shown, tables.terminal_width(env)))
    print("[OK] {} -> results/results.csv, results/results.md, results/results.json".format(
        tables.count(len(table), "experiment")))
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


