# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Where can a job start now, and may it go there? The resource advisor's view.

Standard library only, Python 3.6+. make resources and make check (resources.py)
use it, and so does expflow (expflow resources, expflow info, expflow scaffold
--check-access), which loads this very file: one implementation for both.

One sinfo (every node's GPUs in use, state, CPUs and memory) and one squeue
(every queued job) are all it asks; the rest are pure functions of what they
said. Which account may use which partition comes from .expflow/access.json,
written by expflow scaffold and rewritten by REFRESH=1 (sbatch --test-only for
each account and partition, at once).
"""

import collections
import json
import os

from . import files, slurmkit, tables

ACCESS_FILE = os.path.join(".expflow", "access.json")
ACCESS_TIME = "00:01:00"  # a minute: the access check must not be refused for its time limit
RUNNING_STATES = ("RUNNING", "COMPLETING", "CONFIGURING")


def query_cluster(run=slurmkit.run_command, timeout=30.0):
    """(nodes, jobs, warnings) from one sinfo and one squeue. No sinfo answer is an
    error; no squeue answer leaves jobs None (the queue columns unknown) and a warning."""
    results = slurmkit.run_concurrently({"sinfo": slurmkit.SINFO_NODES_ARGV, "squeue": slurmkit.SQUEUE_ALL_ARGV},
                               run, timeout)
    if not results["sinfo"].ok:
        raise files.ProjectError("cannot list the nodes: {}".format(slurmkit.describe_failure(results["sinfo"])))
    try:
        nodes = slurmkit.parse_sinfo_nodes(results["sinfo"].stdout)
    except ValueError as exc:
        raise files.ProjectError("could not read sinfo's answer ({})".format(exc)) from None
    if results["squeue"].ok:
        return nodes, slurmkit.parse_squeue_all(results["squeue"].stdout), []
    failure = slurmkit.describe_failure(results["squeue"])
    return nodes, None, ["squeue did not answer ({}): queue columns unknown".format(failure)]


# ----------------------------------------------------------------- the table: partition x GPU type

def accepts_jobs(node):
    return node.state != "down" and node.available == "up"


def new_row(node, gpu_type):
    return {
        "partition": node.partition, "default": node.default, "gpu_type": gpu_type,
        "available": node.available, "max_time": node.max_time,
        "gpus_total": 0, "gpus_allocated": 0, "gpus_idle": 0,
        "nodes_idle": 0, "nodes_mixed": 0, "nodes_allocated": 0, "nodes_down": 0,
        "pending_jobs": 0, "pending_gpus": 0, "my_running_jobs": 0, "my_running_gpus": 0,
        "my_pending_jobs": 0, "my_pending_gpus": 0, "accounts": None,
    }


def add_count(row, key, count):
    """row[key] += count, where None (a count a parser could not read) stays None."""
    row[key] = None if row[key] is None or count is None else row[key] + count


def partition_rows(nodes):
    """One row per partition and GPU type ("" for nodes without GPUs), in sinfo's
    order: GPUs in total, allocated (SLURM's GresUsed) and idle on nodes that take
    jobs, and nodes by state. A node with two GPU types counts in both rows. A count
    sinfo did not make clear is None ("?"), never a guess."""
    rows = collections.OrderedDict()
    for node in nodes:
        for gpus in node.gpus or (slurmkit.NodeGpus("", 0, 0),):
            key = (node.partition, gpus.type)
            if key not in rows:
                rows[key] = new_row(node, gpus.type)
            row = rows[key]
            row["nodes_" + node.state] += 1
            add_count(row, "gpus_total", gpus.total)
            add_count(row, "gpus_allocated", gpus.used)
            if accepts_jobs(node):
                add_count(row, "gpus_idle", idle_gpus(gpus))
    return list(rows.values())


def idle_gpus(gpus):
    """A NodeGpus's idle GPUs; None when its total or use is unknown."""
    return None if gpus.total is None or gpus.used is None else max(gpus.total - gpus.used, 0)


def row_for_job(rows, job):
    """The one row of a partition a job counts in: its GPU type's; an untyped GPU
    request the partition's first GPU type; a job without GPUs the GPU-less nodes."""
    if job.gpus != 0:  # None: GPUs the queue did not make clear count as GPUs
        matches = [r for r in rows if r["gpus_total"] != 0 and (r["gpu_type"] == job.gpu_type or not job.gpu_type)]
    else:
        matches = [r for r in rows if r["gpus_total"] == 0]
    return (matches or rows or [None])[0]


def add_queue(rows, jobs, user):
    """Count pending jobs (everyone's) and the user's running and pending jobs, with
    their GPUs. A job pending in several partitions counts in each."""
    by_partition = collections.defaultdict(list)
    for row in rows:
        by_partition[row["partition"]].append(row)
    for job in jobs:
        kind = "running" if job.state in RUNNING_STATES else "pending" if job.state == "PENDING" else ""
        if not kind:
            continue  # suspended, or leaving the queue
        for partition in job.partitions:
            row = row_for_job(by_partition.get(partition, []), job)
            if row is None:
                continue
            if kind == "pending":
                row["pending_jobs"] += 1
                add_count(row, "pending_gpus", job.gpus)
            if job.user == user:
                row["my_{}_jobs".format(kind)] += 1
                add_count(row, "my_{}_gpus".format(kind), job.gpus)


QUEUE_FIELDS = ("pending_jobs", "pending_gpus", "my_running_jobs", "my_running_gpus",
                "my_pending_jobs", "my_pending_gpus")


def table_rows(nodes, jobs, user, access):
    rows = partition_rows(nodes)
    if jobs is None:
        for row in rows:
            row.update(dict.fromkeys(QUEUE_FIELDS))
    else:
        add_queue(rows, jobs, user)
    for row in rows:
        row["accounts"] = accounts_for(access, row["partition"])
    return rows


# ----------------------------------------------------------------- the recommendation

Request = collections.namedtuple("Request", "partition gpu_type gpus nodes cpus mem time")


def make_request(resources, partition=""):
    """A Request from resources shaped like experiment.resolve_resources's (strings);
    partition, when given, is the only one considered."""
    return Request(partition=partition, gpu_type=resources.get("gpu_type", ""),
                   gpus=int(resources.get("gpus") or 0), nodes=int(resources.get("nodes") or 1),
                   cpus=int(resources.get("cpus") or 1), mem=resources.get("mem", ""),
                   time=resources.get("time", ""))


def suits(row, request):
    """The row's partition, GPU type, time limit and access fit the request."""
    if request.partition and row["partition"] != request.partition:
        return False
    if request.gpus and (row["gpus_total"] == 0 or request.gpu_type not in ("", row["gpu_type"])):
        return False
    if not request.gpus and row["gpus_total"] != 0:
        return False  # a job without GPUs is not sent to GPU nodes
    limit, wanted = slurmkit.time_to_minutes(row["max_time"]), slurmkit.time_to_minutes(request.time)
    if limit is not None and wanted is not None and wanted > limit:
        return False
    return row["accounts"] != [] and row["available"] == "up"


def node_fits(node, gpu_type, request, now):
    """One node could hold one node's share of the request: now=True on its free
    GPUs, CPUs and memory; now=False on what it has at all."""
    if not accepts_jobs(node):
        return False
    gpus = sum((idle_gpus(g) if now else g.total) or 0 for g in node.gpus if g.type == gpu_type)
    if gpus < request.gpus:
        return False
    if not now:
        return True
    mem = slurmkit.memory_to_mb(request.mem) if request.mem else None
    cpus_ok = node.cpus_idle is None or node.cpus_idle >= request.cpus
    return cpus_ok and (mem is None or node.memory_free_mb is None or node.memory_free_mb >= mem)


def fits(nodes, row, request, now):
    count = sum(1 for n in nodes if n.partition == row["partition"] and node_fits(n, row["gpu_type"], request, now))
    return count >= request.nodes


def recommend(rows, nodes, request):
    """Where the request can start now (most idle GPUs first); else the one place with
    the fewest GPUs queued ahead (then fewest pending jobs); else nowhere."""
    suitable = [row for row in rows if suits(row, request) and fits(nodes, row, request, now=False)]
    now = [row for row in suitable if fits(nodes, row, request, now=True)]
    if now:
        verdict, chosen = "start_now", sorted(now, key=lambda row: -(row["gpus_idle"] or 0))
    elif suitable:
        verdict, chosen = "queue", [min(suitable, key=lambda row: (
            row["pending_gpus"] or 0, row["pending_jobs"] or 0, -(row["gpus_idle"] or 0)))]
    else:
        verdict, chosen = "none", []
    return {"verdict": verdict, "partitions": [{
        "partition": row["partition"], "gpu_type": row["gpu_type"], "gpus_idle": row["gpus_idle"],
        "pending_jobs": row["pending_jobs"], "pending_gpus": row["pending_gpus"], "accounts": row["accounts"],
    } for row in chosen]}


def build_report(nodes, jobs, user, request, access, gpu_type="", warnings=()):
    """Everything make resources and expflow resources print; request.partition and
    gpu_type also narrow the table."""
    rows = table_rows(nodes, jobs, user, access)
    shown = [row for row in rows if request.partition in ("", row["partition"]) and gpu_type in ("", row["gpu_type"])]
    return {
        "user": user,
        "request": {"partition": request.partition, "gpu_type": request.gpu_type, "gpus": request.gpus,
                    "nodes": request.nodes, "cpus": request.cpus, "mem": request.mem, "time": request.time},
        "partitions": shown,
        "recommendation": recommend(rows, nodes, request),
        "access_checked": access["checked"] if access else None,
        "warnings": list(warnings),
    }



# ----------------------------------------------------------------- why SLURM refused a job

# SLURM's refusal -> the settings it is about (its words say "node configuration",
# not which of partition, GPU type, GPUs, nodes, CPUs or memory).
REFUSAL_SETTINGS = (
    ("invalid partition", ("PARTITION",)),
    ("account/partition", ("ACCOUNT", "PARTITION")),
    ("invalid account", ("ACCOUNT",)),
    ("qos", ("QOS",)),
    ("time limit", ("TIME", "PARTITION")),
    ("generic resource", ("GPU_TYPE", "GPUS")),
    ("feature", ("CONSTRAINT",)),
    ("node count", ("NODES",)),
    ("memory", ("MEM",)),
    ("processors", ("CPUS", "NODES")),
    ("node configuration", ("PARTITION", "GPU_TYPE", "GPUS", "NODES", "CPUS", "MEM", "CONSTRAINT")),
)


def refusal_settings(reason):
    """The settings (PARTITION, GPU_TYPE, ...) SLURM's reason is about, in table order."""
    found = []
    for words, keys in REFUSAL_SETTINGS:
        if words in reason.lower():
            found += [key for key in keys if key not in found]
    return found


def resource_conflicts(nodes, resources):
    """[(setting, sentence)]: what in resources (lower-case keys, as submit.py
    resolves them) the partition's nodes cannot give, judged from sinfo alone."""
    partition = resources.get("partition") or next((n.partition for n in nodes if n.default), "")
    mine = [node for node in nodes if node.partition == partition]
    if not mine:
        return [("PARTITION", "there is no partition {}".format(partition or "by default"))]
    gpus, gpu_type = int(resources.get("gpus") or 0), resources.get("gpu_type", "")
    types = sorted({g.type for node in mine for g in node.gpus})
    conflicts = []
    if gpus and not types:
        conflicts.append(("GPUS", "partition {} has no GPUs".format(partition)))
    elif gpus and gpu_type and gpu_type not in types:
        conflicts.append(("GPU_TYPE", "partition {} has no {} GPUs (it has {})".format(
            partition, gpu_type, ", ".join(t or "untyped" for t in types))))
    elif gpus:
        most = max(sum(g.total for g in node.gpus if not gpu_type or g.type == gpu_type) for node in mine)
        if gpus > most:
            conflicts.append(("GPUS", "nodes of {} have at most {} {}GPUs each".format(
                partition, most, gpu_type + " " if gpu_type else "")))
    if int(resources.get("nodes") or 1) > len(mine):
        conflicts.append(("NODES", "partition {} has {} node{}".format(
            partition, len(mine), "" if len(mine) == 1 else "s")))
    limit = slurmkit.time_to_minutes(mine[0].max_time)
    wanted = slurmkit.time_to_minutes(resources.get("time", ""))
    if limit is not None and wanted is not None and wanted > limit:
        conflicts.append(("TIME", "partition {} allows at most {}".format(partition, mine[0].max_time)))
    return conflicts


def explain_refusal_of(reason, resources, exp_path, env):
    """explain_refusal for a job of the experiment at exp_path ("" for the
    project's settings) as resolved with the make variables in env; sinfo is
    asked (a refusal is rare)."""
    try:
        nodes = query_cluster(timeout=float(env.get("EXPFLOW_SLURM_TIMEOUT") or 30))[0]
    except files.ProjectError:
        nodes = None
    own = files.read_settings(exp_path, missing_ok=True) if exp_path else {}
    return explain_refusal(reason, resources, files.setting_sources(exp_path, own, env, slurmkit.RESOURCE_KEYS), nodes)


def explain_refusal(reason, resources, sources, nodes=None):
    """SLURM's reason, then what conflicts (when sinfo's nodes are given) and where
    each value involved comes from: sources maps a setting to "the command line",
    "settings.env" or an experiment's own settings.env."""
    keys = refusal_settings(reason)
    found = resource_conflicts(nodes, resources) if nodes else []
    found = [(key, sentence) for key, sentence in found if key in keys or not keys]
    # the values in conflict and the partition they are judged against; else all SLURM's words are about
    named = list(collections.OrderedDict.fromkeys([key for key, _ in found] + ["PARTITION"])) if found else keys
    given = ["{}={!r} from {}".format(key, resources[key.lower()], sources[key])
             for key in named if resources.get(key.lower()) and key in sources]
    text = reason
    if found:
        text += ": " + "; ".join(sentence for _, sentence in found)
    if given:
        text += " ({})".format(", ".join(given))
    return text


# ----------------------------------------------------------------- which account may use which partition

def test_only_argv(resources):
    """sbatch --test-only for a request outside any experiment (scaffold, the access
    table): the options a submission would carry, and a trivial script. Resources
    left out of the dict are not passed."""
    values = dict.fromkeys((key.lower() for key in slurmkit.RESOURCE_KEYS), "")
    values.update(resources)
    return ["sbatch", "--test-only", "--job-name=expflow-check"] + slurmkit.resource_options(values) + ["--wrap=true"]


def check_outcome(result):
    """An sbatch --test-only CommandResult -> {ok, reason, start, nodes, partition}."""
    if result.ok:
        found = slurmkit.parse_sbatch_test_only(result.stderr) or {}
        return {"ok": True, "reason": "", "start": found.get("start", ""), "nodes": found.get("nodes", ""),
                "partition": found.get("partition", "")}
    if result.returncode is None:
        reason = "could not check: " + result.error
    else:
        reason = slurmkit.sbatch_test_only_reason(result.stderr)
    return {"ok": False, "reason": reason, "start": "", "nodes": "", "partition": ""}


def access_record(user, accounts, partitions, results, cluster=""):
    """{(account, partition): test-only CommandResult} -> what .expflow/access.json
    holds: the cluster asked (its ClusterName, "" when not known), and per
    account the partitions SLURM accepted, those it refused (with its
    reason), and those it could not be asked about (with why)."""
    entries = []
    for account in accounts:
        entry = {"account": account, "accepted": [], "refused": {}, "unchecked": {}}
        for partition in partitions:
            result = results[(account, partition)]
            outcome = check_outcome(result)
            if outcome["ok"]:
                entry["accepted"].append(partition)
            else:
                entry["refused" if result.returncode is not None else "unchecked"][partition] = outcome["reason"]
        entries.append(entry)
    return {"user": user, "cluster": cluster, "checked": files.now_iso(), "accounts": entries}


def probe_access(user, accounts, partitions, run=slurmkit.run_command, timeout=10.0, cluster=""):
    """sbatch --test-only for every account and partition, at once. No accounts known
    (accounting off): the one "" account, meaning the user's default."""
    accounts = list(accounts) or [""]
    commands = {(account, partition): test_only_argv({"account": account, "partition": partition,
                                                      "time": ACCESS_TIME})
                for account in accounts for partition in partitions}
    return access_record(user, accounts, list(partitions), slurmkit.run_concurrently(commands, run, timeout),
                         cluster)


def accounts_for(access, partition):
    """The accounts that may submit to partition; None when that is not known: never
    checked, a partition the check did not ask about (added since, or another
    cluster's), or no account accepted and some could not be asked."""
    if not access:
        return None
    entries = access["accounts"]
    accepted = [entry["account"] for entry in entries if partition in entry["accepted"]]
    refused = [entry for entry in entries if partition in entry.get("refused", {})]
    if not accepted and (not refused or any(partition in entry.get("unchecked", {}) for entry in entries)):
        return None
    return accepted


def read_access(root, user, cluster=""):
    """The project's access cache, when it was written for this user and, when
    both name one, this cluster (a home shared by two clusters holds one
    project for both: one cluster's answer says nothing of the other's)."""
    data, _problem = files.read_json(os.path.join(root, ACCESS_FILE))
    if not (isinstance(data, dict) and data.get("user") == user and isinstance(data.get("accounts"), list)):
        return None
    if cluster and data.get("cluster") and data["cluster"] != cluster:
        return None
    return data


def write_access(root, access):
    os.makedirs(os.path.join(root, os.path.dirname(ACCESS_FILE)), exist_ok=True)
    files.write_json_atomic(os.path.join(root, ACCESS_FILE), access)


# ----------------------------------------------------------------- output

HEADER = ["PARTITION", "GPU", "TOTAL", "ALLOC", "IDLE", "NODES", "PENDING", "MINE_RUN", "MINE_PEND", "MAX_TIME"]
LEGEND = ("NODES: idle/mixed/allocated/down; PENDING: everyone's pending jobs/GPUs; "
          "MINE_RUN, MINE_PEND: your jobs/GPUs")


def known(value):
    return "?" if value is None else value


def pair(row, what):
    jobs, gpus = row[what + "_jobs"], row[what + "_gpus"]
    return "?" if jobs is None else "{}/{}".format(jobs, known(gpus))


def text_row(row):
    nodes = "/".join(str(row["nodes_" + s]) for s in ("idle", "mixed", "allocated", "down"))
    return [row["partition"] + ("*" if row["default"] else ""), row["gpu_type"] or "-", known(row["gpus_total"]),
            known(row["gpus_allocated"]), known(row["gpus_idle"]), nodes, pair(row, "pending"), pair(row, "my_running"),
            pair(row, "my_pending"), row["max_time"]]


def describe_request(request):
    parts = ["{}x {}".format(request["gpus"], request["gpu_type"] or "any GPU") if request["gpus"] else "no GPU"]
    if request["nodes"] > 1:
        parts.append("{} nodes".format(request["nodes"]))
    parts.append(request["time"] or "the partition's default time")
    return ", ".join(parts)


def describe_place(place):
    if place["gpu_type"]:
        facts = ["idle {}: {}".format(place["gpu_type"], known(place["gpus_idle"])), "GPUs queued: {}".format(
            known(place["pending_gpus"]))]
    else:
        facts = ["jobs pending: {}".format("?" if place["pending_jobs"] is None else place["pending_jobs"])]
    if place["accounts"] is not None:
        facts.append("accounts: " + ", ".join(account or "your default" for account in place["accounts"]))
    return "{} ({})".format(place["partition"], ", ".join(facts))


def recommendation_line(report, hint=""):
    recommendation = report["recommendation"]
    places = "; ".join(describe_place(place) for place in recommendation["partitions"])
    found = {
        "start_now": "can start now on " + places,
        "queue": "nothing is free now; fewest GPUs queued ahead on " + places,
        "none": "no partition can run it (GPU type, GPUs per node, time limit, or no account may use it)",
    }[recommendation["verdict"]]
    unchecked = report["access_checked"] is None and recommendation["partitions"]
    return "Recommendation for {}: {}{}".format(
        describe_request(report["request"]), found, "; accounts not checked" + hint if unchecked else "")


def render_text(report, width=120, hint=""):
    """The table, its legend and the recommendation line. hint follows "accounts not
    checked" when there is no access cache: how to make one."""
    rows = [text_row(row) for row in report["partitions"]]
    table = tables.plain_table(HEADER, rows, width) if rows else "no partition matches\n"
    return table + LEGEND + "\n" + recommendation_line(report, hint) + "\n"


def render_json(report):
    """Keys in the documented order (docs/reference.md of expflow)."""
    return json.dumps(report, indent=2) + "\n"


