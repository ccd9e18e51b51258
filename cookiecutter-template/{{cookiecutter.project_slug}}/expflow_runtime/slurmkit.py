"""SLURM facts for expflow: run scheduler commands safely, parse their output.

Standard library only, Python 3.6+, imports no other module of the runtime. This
one file serves both the generated project and the expflow package, which loads
it from its bundled template: one implementation of each parser.

Every command is asked for machine-readable output (--noheader, --parsable2,
explicit field lists) and the parsers are pure functions of that text, tested
on output recorded from a real cluster (tests/data/slurm/ in expflow).
"""

import collections
import os
import pwd
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

# ----------------------------------------------------------------- running commands

class CommandResult(collections.namedtuple("CommandResult", "argv returncode stdout stderr error")):
    """What one scheduler command did. returncode is None when the command could
    not run at all (missing, timed out); error then says why in a few words."""

    __slots__ = ()

    @property
    def ok(self):
        return self.returncode == 0


def run_command(argv, timeout=10.0, own_session=False):
    """Run argv (a list, never a shell string) and never raise: missing, failing
    and hanging commands come back as a CommandResult with returncode/error set.
    own_session: the command does not get the terminal's Ctrl-C (sbatch must not
    be killed half-way through a submission)."""
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            encoding="utf-8",
            errors="replace",  # bytes that are not UTF-8 (a node's or user's odd name): never a traceback
            timeout=timeout,
            start_new_session=own_session,
        )
    except FileNotFoundError:
        return CommandResult(argv, None, "", "", "{} not found".format(argv[0]))
    except subprocess.TimeoutExpired:
        return CommandResult(argv, None, "", "", "{} timed out after {:g}s".format(argv[0], timeout))
    except OSError as exc:
        return CommandResult(argv, None, "", "", "{} could not run: {}".format(argv[0], exc.strerror))
    return CommandResult(argv, proc.returncode, proc.stdout, proc.stderr, "")


def current_user():
    """The user SLURM knows the caller as (squeue --user, the access cache)."""
    return pwd.getpwuid(os.getuid()).pw_name


def run_concurrently(commands, run=run_command, timeout=30.0):
    """{name: argv} -> {name: CommandResult}: independent queries all at once, each
    with its own timeout, so a slow scheduler costs one timeout, not the sum."""
    if not commands:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(commands), 16)) as pool:
        futures = {name: pool.submit(run, argv, timeout=timeout) for name, argv in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def describe_failure(result):
    """One line saying why a command failed: its own last stderr line if it ran."""
    if result.error:
        return result.error
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else "exit status {}".format(result.returncode)
    return "{} failed: {}".format(result.argv[0], reason)


def sbatch_rejection_reason(stderr):
    """SLURM's own reason from a failed sbatch, without the 'sbatch: error:' noise."""
    reasons = []
    for line in stderr.splitlines():
        line = re.sub(r"^s\w+: error: ", "", line.strip())
        line = re.sub(r"^Batch job submission failed: ", "", line)
        if line:
            reasons.append(line)
    return reasons[-1] if reasons else "sbatch failed without saying why"


# ----------------------------------------------------------------- scalar formats

_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def time_to_minutes(text):
    """SLURM time ([D-]HH:MM:SS, [D-]HH:MM, [D-]HH, MM:SS, MM) -> minutes (rounded
    up); None for UNLIMITED/infinite/blank."""
    text = text.strip()
    if text.lower() in ("", "unlimited", "infinite", "n/a", "none"):
        return None
    match = _TIME_RE.match(text)
    if not match:
        raise ValueError("not a SLURM time: {!r}".format(text))
    days, first, second, third = match.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = int(first), int(second or 0), int(third or 0)
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif third is not None:  # HH:MM:SS
        total = int(first) * 3600 + int(second) * 60 + int(third)
    elif second is not None:  # MM:SS
        total = int(first) * 60 + int(second)
    else:  # MM
        total = int(first) * 60
    return -(-total // 60)


def time_to_seconds(text):
    """sacct's Elapsed ([D-]HH:MM:SS) -> seconds; None when blank."""
    text = text.strip()
    match = _TIME_RE.match(text)
    if not text or not match:
        return None
    days, first, second, third = match.groups()
    parts = [int(p) for p in (first, second, third) if p is not None]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]


def format_seconds(seconds):
    """Seconds -> [D-]HH:MM:SS, the way SLURM prints elapsed time."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    text = "{:02d}:{:02d}:{:02d}".format(rest // 3600, rest % 3600 // 60, rest % 60)
    return "{}-{}".format(days, text) if days else text


# ----------------------------------------------------------------- GRES

Gres = collections.namedtuple("Gres", "name type count")


def _split_top_level(text):
    """Split on commas that are not inside parentheses: gpu:a100:4(S:0-1),gpu:v100:2."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_gres(text):
    """A sinfo/squeue GRES string -> [Gres]. Handles (null), N/A, gres: and gres/
    prefixes, socket suffixes "(S:0-1)" and "(IDX:0-1)", and untyped "gpu:2"."""
    text = text.strip()
    if text in ("", "(null)", "N/A", "none"):
        return []
    found = []
    for item in _split_top_level(text):
        item = re.sub(r"\(.*\)$", "", item)
        item = re.sub(r"^gres[:/]", "", item).replace("/", ":")
        fields = item.split(":")
        count = 1
        if len(fields) > 1 and fields[-1].isdigit():
            count = int(fields.pop())
        name = fields[0]
        gtype = fields[1] if len(fields) > 1 else ""
        found.append(Gres(name, gtype, count))
    return found


def gpu_request(gpu_type, gpus):
    """The --gres value for a GPU request, or "" for none."""
    gpus = int(gpus or 0)
    if gpus <= 0:
        return ""
    return "gpu:{}:{}".format(gpu_type, gpus) if gpu_type else "gpu:{}".format(gpus)


# ----------------------------------------------------------------- sinfo

SINFO_PARTITIONS_ARGV = ["sinfo", "--noheader", "--format=%P|%a|%l|%D|%c|%m|%G"]

Partition = collections.namedtuple(
    "Partition", "name default available max_time nodes cpus_per_node memory_mb gpu_types gpus_per_node"
)


def parse_sinfo_partitions(text):
    """Output of SINFO_PARTITIONS_ARGV -> [Partition], in sinfo's order.

    A partition whose nodes differ (CPUs, memory, GRES) takes several lines; they
    are merged: node counts add up, GPU types are collected, the rest is the max.
    """
    merged = collections.OrderedDict()
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 7:
            raise ValueError("unexpected sinfo line: {!r}".format(line))
        name, avail, max_time, nodes, cpus, memory, gres = fields
        default = name.endswith("*")
        name = name.rstrip("*")
        gpus = [g for g in parse_gres(gres) if g.name == "gpu"]
        entry = merged.setdefault(name, {"default": False, "available": avail, "max_time": max_time,
                                         "nodes": 0, "cpus": 0, "memory": 0, "types": [], "gpus": 0})
        entry["default"] = entry["default"] or default
        entry["nodes"] += _int(nodes)
        entry["cpus"] = max(entry["cpus"], _int(cpus.rstrip("+")))
        entry["memory"] = max(entry["memory"], _int(memory.rstrip("+")))
        entry["gpus"] = max(entry["gpus"], sum(g.count for g in gpus))
        for gres_item in gpus:
            if gres_item.type and gres_item.type not in entry["types"]:
                entry["types"].append(gres_item.type)
    return [
        Partition(name, e["default"], e["available"], e["max_time"], e["nodes"], e["cpus"],
                  e["memory"], tuple(e["types"]), e["gpus"])
        for name, e in merged.items()
    ]


def _int(text):
    text = text.strip()
    return int(text) if text.isdigit() else 0


# ----------------------------------------------------------------- scontrol / sacctmgr

SCONTROL_CONFIG_ARGV = ["scontrol", "show", "config"]


def parse_scontrol_config(text):
    """`scontrol show config` -> {Key: Value} for its `Key = Value` lines."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.strip()
        if sep and key and " " not in key:
            config[key] = value.strip()
    return config


def accounting_enabled(config):
    """Whether slurmdbd accounting is on, from parse_scontrol_config's dict."""
    return config.get("AccountingStorageType", "accounting_storage/none") != "accounting_storage/none"


def sacctmgr_user_argv(user):
    return ["sacctmgr", "--noheader", "--parsable2", "show", "user", user, "format=User,DefaultAccount"]


def sacctmgr_assoc_argv(user):
    return ["sacctmgr", "--noheader", "--parsable2", "show", "assoc", "user=" + user,
            "format=Cluster,Account,Partition,QOS"]


def parse_sacctmgr_default_account(text):
    """`sacctmgr -nP show user U format=User,DefaultAccount` -> the default account or ""."""
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) >= 2 and fields[1]:
            return fields[1]
    return ""


def parse_sacctmgr_accounts(text):
    """`sacctmgr -nP show assoc user=U format=Cluster,Account,Partition,QOS` -> accounts,
    unique, in sacctmgr's order."""
    accounts = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) >= 2 and fields[1] and fields[1] not in accounts:
            accounts.append(fields[1])
    return accounts


def accounting_disabled_message(stderr):
    """True when sacct/sacctmgr said accounting storage is off, not that they broke."""
    text = stderr.lower()
    return "accounting storage is disabled" in text or "not running a supported accounting_storage" in text


# ----------------------------------------------------------------- jobs: sbatch, sacct, squeue

def parse_sbatch_parsable(text):
    """`sbatch --parsable` prints "jobid" or "jobid;cluster" -> jobid."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    job_id = first.split(";")[0].strip()
    if not re.match(r"^\d+(_\d+)?$", job_id):
        raise ValueError("sbatch printed no job id: {!r}".format(text.strip()))
    return job_id


SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "Elapsed", "NodeList",
                "Partition", "Account", "AllocTRES", "Submit", "Start", "End", "Reason")

JobInfo = collections.namedtuple(
    "JobInfo", "job_id state exit_code elapsed node partition account gpu_type gpus submit start end reason "
    "name restarts history"
)
# name: the job's name; restarts: how often SLURM started it again (requeue,
# preemption, node failure); history: the states its earlier runs ended in
JobInfo.__new__.__defaults__ = ("", 0, ())

FINAL_STATES = frozenset((
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
    "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED",
))


def sacct_argv(job_ids):
    """Every run of the jobs (--duplicates: a requeued job has a row per start)."""
    return ["sacct", "--noheader", "--parsable2", "--allocations", "--duplicates",
            "--jobs=" + ",".join(job_ids), "--format=" + ",".join(SACCT_FIELDS)]


def sacct_by_name_argv(names, since):
    """The jobs named so (expflow's job names carry a submission's token),
    submitted after the epoch time since (sacct's default is today only)."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))
    return ["sacct", "--noheader", "--parsable2", "--allocations", "--starttime=" + start,
            "--name=" + ",".join(names), "--format=" + ",".join(SACCT_FIELDS)]


def job_ids_by_name(jobs):
    """{job name: job id} from parse_sacct's or parse_squeue's answer; an array's
    tasks all give its id (44_3 -> 44)."""
    return {info.name: info.job_id.split("_")[0] for info in jobs.values() if info.name}


def _blank_time(text):
    return "" if text in ("Unknown", "None", "N/A") else text


def gpus_from_tres(tres):
    """AllocTRES "cpu=2,gres/gpu:l40s=1,gres/gpu=1" -> ("l40s", 1)."""
    gpu_type, count = "", 0
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpu":
            count = _int(value)
        elif key.startswith("gres/gpu:"):
            gpu_type = key.split(":", 1)[1]
    return gpu_type, count


_ARRAY_RE = re.compile(r"^(\d+)_\[([0-9,\-]+)(?:%\d+)?\]$")


def expand_array_id(job_id):
    """A pending array's aggregated id "44_[0-3,7%4]" -> ["44_0", ..., "44_3", "44_7"];
    any other id -> [job_id]."""
    match = _ARRAY_RE.match(job_id)
    if not match:
        return [job_id]
    array, ranges = match.groups()
    tasks = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        tasks += range(int(low), int(high or low) + 1)
    return ["{}_{}".format(array, task) for task in tasks]


def _no_reason(reason):
    return "" if reason in ("None", "(null)") else reason


def parse_sacct(text):
    """Output of sacct_argv -> {job_id: JobInfo}; step rows (.batch, .extern, .0) skipped.

    "CANCELLED by 0" becomes CANCELLED; ExitCode "3:0" becomes 3 and "0:9" (killed
    by signal 9) stays "0:9". A requeued job has a row per run, oldest first: the
    last is its state, the earlier ones its restarts and history.
    """
    jobs = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) != len(SACCT_FIELDS) or "." in fields[0]:
            continue
        job_id, name, state, exit_code, elapsed, node, partition, account, tres, submit, start, end, reason = fields
        gpu_type, gpus = gpus_from_tres(tres)
        info = JobInfo(
            job_id=job_id, state=state.split()[0] if state else "", exit_code=parse_exit_code(exit_code),
            elapsed=elapsed, node="" if node == "None assigned" else node, partition=partition,
            account=account, gpu_type=gpu_type, gpus=gpus, submit=_blank_time(submit),
            start=_blank_time(start), end=_blank_time(end), reason=_no_reason(reason), name=name,
        )
        for task_id in expand_array_id(job_id):
            earlier = jobs.get(task_id)
            if earlier is not None:
                info = info._replace(restarts=earlier.restarts + 1, history=earlier.history + (earlier.state,))
            jobs[task_id] = info._replace(job_id=task_id)
    return jobs


def parse_exit_code(text):
    """sacct's "code:signal" -> the code (an int), or "code:signal" when a signal
    ended the job; None when there is none."""
    code, _, killed_by = text.partition(":")
    if not code.isdigit():
        return None
    return "{}:{}".format(code, killed_by) if killed_by not in ("", "0") else int(code)


def scontrol_job_argv(job_id):
    return ["scontrol", "show", "job", "--oneliner", job_id]


def parse_scontrol_job(text):
    """`scontrol show job --oneliner ID` -> {Key: Value} (values hold no blanks,
    except the trailing Command/WorkDir ones, which are not needed here)."""
    fields = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


SQUEUE_FORMAT = "%i|%j|%T|%P|%M|%N|%r|%b"


def squeue_argv(user):
    return ["squeue", "--noheader", "--user=" + user, "--format=" + SQUEUE_FORMAT]


def squeue_by_name_argv(user, names):
    return ["squeue", "--noheader", "--user=" + user, "--name=" + ",".join(names), "--format=" + SQUEUE_FORMAT]


def parse_squeue(text):
    """Output of squeue_argv -> {job_id: JobInfo} for the jobs still queued or running."""
    jobs = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 8:
            continue
        job_id, name, state, partition, elapsed, node, reason, tres = fields
        gpus = [g for g in parse_gres(tres) if g.name == "gpu"]
        info = JobInfo(
            job_id=job_id, state=state, exit_code=None, elapsed=elapsed, node=node,
            partition=partition, account="", gpu_type=gpus[0].type if gpus else "",
            gpus=sum(g.count for g in gpus), submit="", start="", end="",
            reason=_no_reason(reason), name=name,
        )
        for task_id in expand_array_id(job_id):
            jobs[task_id] = info._replace(job_id=task_id)
    return jobs


# ----------------------------------------------------------------- values that reach sbatch

# The one table of resource settings: every list of them (cookiecutter.json,
# settings.env, sbatch options, validation, descriptions) derives from it or is
# checked against it by a test. (setting, sbatch option or "" when it needs
# more than a flag, the form it takes, its pattern)
Resource = collections.namedtuple("Resource", "key option form pattern")
RESOURCES = (
    Resource("PARTITION", "--partition", "a partition name such as l40s_public", r"^[A-Za-z0-9][A-Za-z0-9_.,-]*$"),
    Resource("ACCOUNT", "--account", "an account name such as torch_pr_68_general", r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    Resource("GPU_TYPE", "", "a GPU type such as h200", r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    Resource("GPUS", "", "a whole number of GPUs per node, such as 1", r"^\d{1,3}$"),
    Resource("NODES", "--nodes", "a whole number of nodes, at least 1", r"^[1-9]\d{0,3}$"),
    Resource("CPUS", "--cpus-per-task", "a whole number of CPUs per task, at least 1", r"^[1-9]\d{0,3}$"),
    Resource("MEM", "--mem", "a memory size such as 16G or 8000M", r"^[1-9]\d*[KMGT]?$"),
    Resource("TIME", "--time", "a SLURM time such as 04:00:00 or 1-00:00:00", r"^(\d+-)?\d+(:\d{2}){0,2}$"),
    Resource("QOS", "--qos", "a QOS name", r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
    Resource("CONSTRAINT", "--constraint", "a node feature expression such as a100&ib", r"^[A-Za-z0-9_.&|\[\]*,:-]+$"),
    Resource("MAIL_TYPE", "--mail-type", "mail types such as END,FAIL", r"^[A-Z_]+(,[A-Z_]+)*$"),
    Resource("MAIL_USER", "--mail-user", "an e-mail address such as alice@example.edu",
             r"^[A-Za-z0-9._%+-]+(@[A-Za-z0-9.-]+)?$"),
    # long jobs: --requeue and --signal=B:USR1@TIME_LIMIT_GRACE while MAX_RESTARTS > 0
    Resource("TIME_LIMIT_GRACE", "", "a number of seconds such as 300", r"^\d{1,5}$"),
    Resource("MAX_RESTARTS", "", "a whole number of restarts such as 10 (0: none)", r"^\d{1,4}$"),
)
RESOURCE_KEYS = tuple(resource.key for resource in RESOURCES)
_BY_NAME = {resource.key.lower(): resource for resource in RESOURCES}


def check_option(name, value):
    """Return value if it may go on an sbatch command line, else raise ValueError
    naming the setting and the form it takes. Empty means "not set" and passes.
    name is the setting in lower case (gpu_type), as resources dicts hold it."""
    resource = _BY_NAME[name]
    if re.search(r"[\x00-\x1f\x7f]", str(value)):  # a newline, NUL, ...: not even around the value
        raise ValueError("{}={!r}: a value cannot hold a newline, NUL or other control character".format(
            resource.key, value))
    value = str(value).strip()
    if value and not re.fullmatch(resource.pattern, value, re.ASCII):  # "$" takes a final newline; \d "٣"
        raise ValueError("{}={!r} is not {}".format(resource.key, value, resource.form))
    return value


def resource_options(resources):
    """{partition: .., gpus: .., ...} (lower-case keys) -> sbatch options for the
    values that are set; GPUs as one --gres."""
    options = ["{}={}".format(r.option, resources[r.key.lower()]) for r in RESOURCES
               if r.option and resources.get(r.key.lower())]
    gres = gpu_request(resources.get("gpu_type", ""), resources.get("gpus", ""))
    options += ["--gres=" + gres] if gres else []
    if requeues(resources):  # told GRACE seconds before the limit, the job saves and requeues itself
        options += ["--requeue", "--signal=B:USR1@{}".format(int(resources["time_limit_grace"]))]
    return options


def requeues(resources):
    """Whether a job of these resources saves and requeues itself before its time limit."""
    return int(resources.get("max_restarts") or 0) > 0 and int(resources.get("time_limit_grace") or 0) > 0


def describe_request(resources):
    """"l40s_public, 1x l40s, 01:00:00" (with "2 nodes" and "per node" for several):
    the partition, nodes, GPUs and time of a request."""
    parts = [resources.get("partition") or "default partition"]
    if int(resources.get("nodes") or 1) > 1:
        parts.append("{} nodes".format(resources["nodes"]))
    gres = gpu_request(resources.get("gpu_type", ""), resources.get("gpus", ""))
    if gres:
        parts.append("{}x {}{}".format(resources["gpus"], resources.get("gpu_type") or "gpu",
                                       " per node" if int(resources.get("nodes") or 1) > 1 else ""))
    if resources.get("time"):
        parts.append(resources["time"])
    return ", ".join(parts)


# ----------------------------------------------------------------- resources: nodes, queue, test-only
# Used by advice.py (make resources, make check, expflow resources and info).

# One line per node and partition; each field ends with "|" (no width: no padding,
# no truncation). Partition keeps sinfo's "*" on the default partition.
SINFO_NODE_FIELDS = ("NodeList", "Partition", "Available", "Time", "StateLong", "CPUsState",
                     "Memory", "AllocMem", "Gres", "GresUsed")
SINFO_NODES_ARGV = ["sinfo", "--noheader", "--Node", "--Format=" + ",".join(f + ":|" for f in SINFO_NODE_FIELDS)]

NodeGpus = collections.namedtuple("NodeGpus", "type total used")
NodeInfo = collections.namedtuple(
    "NodeInfo", "name partition default available max_time state cpus_idle memory_free_mb gpus"
)

# Words in a node state that mean it takes no new job (drained, draining, down, fail,
# inval, maint, ...); a trailing "*" means the node does not respond.
_NODE_UNAVAILABLE = ("down", "drain", "fail", "inval", "unknown", "maint", "reboot", "reserved",
                     "future", "power_down", "powered_down", "powering_down", "not_responding")
_NODE_BUSY = {"idle": "idle", "mixed": "mixed", "allocated": "allocated", "completing": "allocated"}


def node_state(state_long):
    """sinfo StateLong -> idle, mixed, allocated or down (anything that takes no new job)."""
    text = state_long.strip().lower()
    if not text or text.endswith("*") or any(word in text for word in _NODE_UNAVAILABLE):
        return "down"
    return _NODE_BUSY.get(re.split(r"[^a-z_]", text)[0], "down")


def _node_gpus(gres, gres_used):
    """Gres "gpu:h200:8" and GresUsed "gpu:h200:3(IDX:0-2)" -> (NodeGpus, ...). An
    untyped used count ("gpu:2") belongs to the node's only GPU type."""
    totals = collections.OrderedDict()
    for item in parse_gres(gres):
        if item.name == "gpu":
            totals[item.type] = totals.get(item.type, 0) + item.count
    used = dict.fromkeys(totals, 0)
    for item in parse_gres(gres_used):
        gtype = item.type if item.type or len(totals) != 1 else next(iter(totals))
        if item.name == "gpu" and gtype in used:
            used[gtype] += item.count
    return tuple(NodeGpus(gtype, count, used[gtype]) for gtype, count in totals.items())


def _cpus_idle(cpus_state):
    """CPUsState "allocated/idle/other/total" -> idle CPUs, None when not given."""
    parts = cpus_state.split("/")
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None


def parse_sinfo_nodes(text, fields=SINFO_NODE_FIELDS):
    """Output of SINFO_NODES_ARGV (or of another --Format list of the same fields, given
    as fields) -> [NodeInfo], one per node and partition, in sinfo's order.
    Fields left out of the list take neutral values: partition up, no time limit,
    CPUs and memory unknown (None)."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = line.split("|")
        if values and values[-1] == "":
            values.pop()  # every field ends with "|"
        if len(values) != len(fields):
            raise ValueError("unexpected sinfo line: {!r}".format(line))
        node = dict(zip(fields, (v.strip() for v in values)))
        partition = node.get("Partition") or node.get("PartitionName", "")
        memory, alloc = node.get("Memory", ""), node.get("AllocMem", "")
        nodes.append(NodeInfo(
            name=node["NodeList"], partition=partition.rstrip("*"), default=partition.endswith("*"),
            available=node.get("Available", "up"), max_time=node.get("Time", ""),
            state=node_state(node.get("StateLong", "")), cpus_idle=_cpus_idle(node.get("CPUsState", "")),
            memory_free_mb=_int(memory) - _int(alloc) if memory.isdigit() else None,
            gpus=_node_gpus(node.get("Gres", ""), node.get("GresUsed", "")),
        ))
    return nodes


# Every user's jobs, one array task per line (--array): id, user, partition(s),
# state, GRES per node, nodes, reason.
SQUEUE_ALL_FORMAT = "%i|%u|%P|%T|%b|%D|%r"
SQUEUE_ALL_ARGV = ["squeue", "--noheader", "--all", "--array", "--format=" + SQUEUE_ALL_FORMAT]

QueuedJob = collections.namedtuple("QueuedJob", "job_id user partitions state gpu_type gpus nodes reason")


def parse_squeue_all(text):
    """Output of SQUEUE_ALL_ARGV -> [QueuedJob]. gpus is the job's total (per node
    times nodes); partitions is a tuple (a pending job may name several)."""
    jobs = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 7:
            continue
        job_id, user, partitions, state, gres, nodes, reason = fields
        gpus = [g for g in parse_gres(gres) if g.name == "gpu"]
        node_count = max(_int(nodes), 1)
        jobs.append(QueuedJob(
            job_id=job_id, user=user, partitions=tuple(p for p in partitions.split(",") if p), state=state,
            gpu_type=gpus[0].type if gpus else "", gpus=sum(g.count for g in gpus) * node_count,
            nodes=node_count, reason=_no_reason(reason),
        ))
    return jobs


_TEST_ONLY_RE = re.compile(
    r"Job (\d+) to start at (\S+) using (\d+) processors on nodes (\S+) in partition (\S+)")


def parse_sbatch_test_only(stderr):
    """An accepted `sbatch --test-only` ("sbatch: Job 16 to start at T using N
    processors on nodes gh001 in partition P", on stderr) -> {start, nodes,
    partition}, or None when it said something else."""
    match = _TEST_ONLY_RE.search(stderr)
    if not match:
        return None
    return {"start": match.group(2), "nodes": match.group(4), "partition": match.group(5)}


def sbatch_test_only_reason(stderr):
    """SLURM's reason from a refused `sbatch --test-only`, which says
    "allocation failure: <reason>" rather than sbatch's usual error line."""
    return re.sub(r"^allocation failure: ", "", sbatch_rejection_reason(stderr))


def memory_to_mb(text):
    """A --mem value (16G, 8000M, 8000: megabytes) -> megabytes; None when empty."""
    match = re.match(r"^(\d+)([KMGT]?)B?$", text.strip().upper())
    if not match:
        return None
    scale = {"K": 1.0 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[match.group(2)]
    return int(-(-int(match.group(1)) * scale // 1))
