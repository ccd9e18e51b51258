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
import signal
import sys
import time

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
    import subprocess  # here: most commands never run one
    try:
        with HeldSignals():
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


class HeldSignals:
    """Ctrl-C, TERM and HUP held while a command runs and its process is
    cleaned up, then delivered again to whatever handled them before. The
    command gets the terminal's Ctrl-C itself and ends; a KeyboardInterrupt
    raised in Python's own cleanup of it (Popen.__del__) would be printed as
    "Exception ignored" and lost, and the command would go on. Outside the
    main thread (where no handler can be set) nothing is held."""

    HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.received, self.previous = [], {}
        try:
            for number in self.HELD:
                self.previous[number] = signal.signal(number, self.hold)
        except ValueError:
            self.restore()
        return self

    def hold(self, number, _frame):
        self.received.append(number)

    def restore(self):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous = {}

    def __exit__(self, *_):
        self.restore()
        for number in self.received:
            os.kill(os.getpid(), number)


def current_user():
    """The user SLURM knows the caller as (squeue --user, the access cache)."""
    return pwd.getpwuid(os.getuid()).pw_name


def run_concurrently(commands, run=run_command, timeout=30.0):
    """{name: argv} -> {name: CommandResult}: independent queries all at once, each
    with its own timeout, so a slow scheduler costs one timeout, not the sum."""
    if not commands:
        return {}
    from concurrent.futures import ThreadPoolExecutor  # here: its import (logging) is 6 ms of every command's start
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


# ----------------------------------------------------------------- what a parser does not understand

_WARNED = set()


def warn_unknown(message):
    """A parser met something it does not understand: say so once per process (a
    WARNING on stderr, as the runtime warns) and let the caller use "unknown"."""
    if message not in _WARNED:
        _WARNED.add(message)
        sys.stderr.write("WARNING: {}\n".format(message))


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


_GRES_COUNT_RE = re.compile(r"^(\d+)([KMGTP]?)$")
_GRES_ITEM_RE = re.compile(r"^[A-Za-z][\w.-]*$")


def _gres_count(text):
    """"8" -> 8, "4G" -> 4 * 1024**3 (GRES counts take SLURM's K/M/G/T/P suffixes,
    src/common/gres.c), anything else -> None."""
    match = _GRES_COUNT_RE.match(text)
    if not match:
        return None
    return int(match.group(1)) * 1024 ** " KMGTP".index(match.group(2) or " ")


def parse_gres(text, count_required=False):
    """A GRES string as sinfo (Gres, GresUsed), squeue (tres-per-*) and scontrol print
    it -> [Gres]. Every printed shape: (null)/N/A for none; "gres:" (up to 23.02) and
    "gres/" (23.11 on) prefixes; a trailing "(S:0-1)", "(IDX:0-2,5)" or "(IDX:N/A)";
    untyped GPUs given the type "(null)" in GresUsed ("gpu:(null):8(IDX:0-7)", the
    %s of a NULL type in gres.c's _node_gres_used); "no_consume" flags; several types
    and non-GPU GRES (shard, mps, MIG profiles such as a100_3g.20gb are just types).

    A request without a count means 1 (sbatch --gres); count_required: sinfo always
    prints a count, so a missing or unreadable one gives the count None and a WARNING.
    """
    text = text.strip()
    if text in ("", "(null)", "N/A", "none"):
        return []
    found = []
    for item in _split_top_level(text):
        fields = [f for f in re.sub(r"^gres[:/]", "", re.sub(r"\([^()]*\)$", "", item)).split(":")
                  if f != "no_consume"]
        count = _gres_count(fields.pop()) if len(fields) > 1 and _gres_count(fields[-1]) is not None else None
        if count is None and not count_required and len(fields) <= 2:
            count = 1
        gtype = "" if len(fields) < 2 or fields[1] == "(null)" else fields[1]
        if len(fields) > 2 or not _GRES_ITEM_RE.match(fields[0]) or count is None:
            warn_unknown("could not read the GRES {!r} in {!r}: its count is unknown".format(item, text))
            count = None
        found.append(Gres(fields[0], gtype, count))
    return found


def gpu_count(items):
    """Sum of the GPUs among parse_gres's items; None when one of them is unknown."""
    counts = [item.count for item in items if item.name == "gpu"]
    return None if None in counts else sum(counts)


def gpu_types(items):
    """The GPU types among parse_gres's items, in order, without repeats ("" untyped)."""
    return list(collections.OrderedDict.fromkeys(item.type for item in items if item.name == "gpu" and item.type))


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
        gpus = [g for g in parse_gres(gres, count_required=True) if g.name == "gpu"]
        entry = merged.setdefault(name, {"default": False, "available": avail, "max_time": max_time,
                                         "nodes": 0, "cpus": 0, "memory": 0, "types": [], "gpus": 0})
        entry["default"] = entry["default"] or default
        entry["nodes"] += _int(nodes)
        # "64+": the least of the nodes sinfo merged into the line (sinfo.1, -e): a lower bound
        entry["cpus"] = max(entry["cpus"], _int(cpus.rstrip("+")))
        entry["memory"] = max(entry["memory"], _int(memory.rstrip("+")))
        entry["gpus"] = max(entry["gpus"], sum(g.count or 0 for g in gpus))
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


def parse_sacctmgr_accounts(text, cluster=""):
    """`sacctmgr -nP show assoc user=U format=Cluster,Account,Partition,QOS` -> accounts,
    unique, in sacctmgr's order. One slurmdbd may serve several clusters: with cluster
    given, only that cluster's associations count; when none of the rows is of that
    cluster (a name we guessed), all are kept and a WARNING says so."""
    rows = [line.strip().split("|") for line in text.splitlines()]
    rows = [fields for fields in rows if len(fields) >= 2 and fields[1]]
    clusters = set(fields[0] for fields in rows)
    if cluster and cluster in clusters:
        rows = [fields for fields in rows if fields[0] == cluster]
    elif len(clusters) > 1:
        warn_unknown("sacctmgr lists associations of several clusters ({}) and none is known to be this one: "
                     "accounts of all of them are listed".format(", ".join(sorted(clusters))))
    return list(collections.OrderedDict.fromkeys(fields[1] for fields in rows))


def scontrol_assoc_mgr_argv(user):
    return ["scontrol", "--oneliner", "show", "assoc_mgr", "users=" + user, "flags=users,assoc"]


def _assoc_mgr_records(text):
    """scontrol's records, one a line: without --oneliner a record goes on over
    indented lines, which are joined to the line they continue."""
    records = []
    for line in text.splitlines():
        if line[:1].isspace() and records:
            records[-1] += " " + line.strip()
        elif line.strip():
            records.append(line.strip())
    return records


def parse_scontrol_assoc_mgr(text):
    """`scontrol --oneliner show assoc_mgr users=U flags=users,assoc` -> (accounts,
    default account): what the two sacctmgr queries above give, from slurmctld's
    cache of associations instead of from slurmdbd.

    slurmctld prints the associations of the users asked for and those of every
    account (UserName= empty); only the former are the user's. It caches only its
    own cluster's (assoc_mgr.c asks slurmdbd for ClusterName's), so there is no
    other cluster to leave out. The accounts come in sacctmgr's order: sacctmgr
    sorts one user's associations by Lft up to 23.02 and by Lineage from 23.11
    (slurmdb_sort_hierarchical_assoc_list), and scontrol prints the same field;
    its own order is by name. accounts is [] when it shows none of the user's
    associations (no accounting storage, a user slurmctld does not know) or
    neither field: ask sacctmgr then."""
    found, default = [], ""
    for record in _assoc_mgr_records(text):
        fields = dict(token.partition("=")[::2] for token in record.split() if "=" in token)
        if record.startswith("UserName="):
            default = fields.get("DefAccount", "")
        elif record.startswith("ClusterName=") and fields.get("UserName") and fields.get("Account"):
            found.append(fields)
    if all(fields.get("Lft", "").isdigit() for fields in found):
        found.sort(key=lambda fields: int(fields["Lft"]))
    elif all(fields.get("Lineage") for fields in found):
        found.sort(key=lambda fields: fields["Lineage"])  # strcmp's order, as sacctmgr's
    else:
        found = []
    accounts = list(collections.OrderedDict.fromkeys(fields["Account"] for fields in found))
    return accounts, "" if default == "(null)" else default  # printf's word for no default


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
    """A TRES string (sacct AllocTRES, scontrol AllocTRES/TRES, squeue tres-alloc)
    -> (gpu type, GPUs). "cpu=2,gres/gpu=2,gres/gpu:l40s=2" -> ("l40s", 2). The untyped
    entry is the total; without it (AccountingStorageTRES may track only typed GPUs,
    slurm.conf(5)) the typed entries add up. Several types: "a100,v100". A count that
    is not a number gives None and a WARNING."""
    total, typed = None, collections.OrderedDict()
    for item in tres.split(","):
        key, _, value = item.strip().partition("=")
        if key != "gres/gpu" and not key.startswith("gres/gpu:"):
            continue  # cpu, mem, gres/gpumem, gres/gpuutil, gres/shard, ...
        count = int(value) if value.isdigit() else None
        if count is None:
            warn_unknown("could not read {!r} in the TRES {!r}: its GPUs are unknown".format(item, tres))
            return "", None
        if key == "gres/gpu":
            total = count
        else:
            typed[key.split(":", 1)[1]] = count
    if total is None:
        total = sum(typed.values())
    return ",".join(typed), total


_ARRAY_RE = re.compile(r"^(\d+)_\[([0-9,:\-]*)(\.\.\.|(?:%\d+)?\]$|$)(?:%\d+)?\]?$")
_ARRAY_PART_RE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")
ARRAY_TEXT_LIMIT = 64  # bytes SLURM gives an array expression unless SLURM_BITSTR_LEN says otherwise


def expand_array_id(job_id):
    """A pending array's aggregated id "44_[0-3,7%4]" -> ["44_0", ..., "44_3", "44_7"];
    a step "44_[1-9:2]" too; any other id -> [job_id].

    SLURM cuts the expression at 64 bytes (squeue.1 %i, sacct.1 JobID): the API ends
    a cut one with "..." (xlate_array_task_str, src/common/slurm_protocol_defs.c) and
    squeue's own merging of pending tasks cuts it silently at 63 characters, and
    its %i at 31 without the "]" (FORMAT_STRING_SIZE, src/squeue/print.c; recorded
    on 22.05). The tasks after the cut are unknown: the whole elements
    before it are kept, the last one (maybe cut in the middle) is not, and a WARNING
    says so."""
    match = _ARRAY_RE.match(job_id)
    if not match:
        return [job_id]
    array, ranges, dots = match.groups()
    parts = ranges.split(",")
    if not dots.endswith("]") or len(ranges) >= ARRAY_TEXT_LIMIT - 1:  # "...", or squeue's %i cut at 31 characters
        parts = parts[:-1]  # cut in the middle, or "" after a final comma
        warn_unknown("SLURM cut the array expression {} short: its tasks after {} are unknown".format(
            job_id, parts[-1] if parts else "its start"))
    parts = [part for part in parts if part]
    tasks = []
    for part in parts:
        low, high, step = _ARRAY_PART_RE.match(part).groups() if _ARRAY_PART_RE.match(part) else (None,) * 3
        if low is None:
            warn_unknown("could not read the array expression {}".format(job_id))
            return [job_id]
        tasks += range(int(low), int(high or low) + 1, int(step or 1))
    return ["{}_{}".format(array, task) for task in tasks]


def _no_reason(reason):
    return "" if reason in ("None", "(null)") else reason


def _split_fields(line, count, free=1):
    """A --parsable2 / "|"-separated line -> count fields. Only the job name (field
    free) is the user's own text: a "|" in it gives extra fields, joined back into it.
    None when the line has too few fields."""
    fields = line.split("|")
    extra = len(fields) - count
    if extra < 0:
        return None
    return fields[:free] + ["|".join(fields[free:free + extra + 1])] + fields[free + extra + 1:]


def parse_sacct(text):
    """Output of sacct_argv -> {job_id: JobInfo}; step rows (.batch, .extern, .0) skipped.

    "CANCELLED by 0" becomes CANCELLED; ExitCode "3:0" becomes 3 and "0:9" (killed
    by signal 9) stays "0:9". A requeued job has a row per run, oldest first: the
    last is its state, the earlier ones its restarts and history.
    """
    jobs = {}
    for line in text.splitlines():
        fields = _split_fields(line, len(SACCT_FIELDS))
        if fields is None or "." in fields[0].replace("...", ""):  # 7.batch is a step; 7_[1,3...] an array cut short
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


def allocated_tres(fields):
    """The TRES SLURM allocated, from parse_scontrol_job's dict: AllocTRES from 23.02
    on (ReqTRES beside it), TRES up to 22.05, which printed the allocation or, while
    pending, the request (src/api/job_info.c at slurm-22-05-11-1 and slurm-23-02-0-1).
    "" when nothing is allocated yet."""
    if "AllocTRES" in fields:
        return "" if fields["AllocTRES"] == "(null)" else fields["AllocTRES"]
    if fields.get("JobState", "RUNNING") == "PENDING":
        return ""
    return fields.get("TRES", "")


SQUEUE_FORMAT = "%i|%j|%T|%P|%M|%N|%r|%b"


# --array: one line per task, never an array expression cut at 64 bytes
def squeue_argv(user):
    return ["squeue", "--noheader", "--array", "--user=" + user, "--format=" + SQUEUE_FORMAT]


def squeue_by_name_argv(user, names):
    return ["squeue", "--noheader", "--array", "--user=" + user, "--name=" + ",".join(names),
            "--format=" + SQUEUE_FORMAT]


def parse_squeue(text):
    """Output of squeue_argv -> {job_id: JobInfo} for the jobs still queued or running."""
    jobs = {}
    for line in text.splitlines():
        fields = _split_fields(line.strip(), 8)
        if fields is None:
            continue
        job_id, name, state, partition, elapsed, node, reason, tres = fields
        gres = parse_gres(tres)
        types = gpu_types(gres)
        info = JobInfo(
            job_id=job_id, state=state, exit_code=None, elapsed=elapsed, node=node,
            partition=partition, account="", gpu_type=",".join(types),
            gpus=gpu_count(gres), submit="", start="", end="",
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
    # how the program starts on the nodes: task_layout() and launch_argv()
    Resource("LAUNCHER", "", "none, srun (one task per GPU) or torchrun (one per node)", r"^(none|srun|torchrun)$"),
    Resource("CPUS", "--cpus-per-task", "a whole number of CPUs per task, at least 1", r"^[1-9]\d{0,3}$"),
    Resource("MEM", "--mem", "a memory size such as 16G or 8000M", r"^[1-9]\d*[KMGT]?$"),
    # with GPUs, these replace CPUS and MEM: they scale with the GPUs of a task, a node
    Resource("CPUS_PER_GPU", "", "a whole number of CPUs per GPU such as 4", r"^[1-9]\d{0,3}$"),
    Resource("MEM_PER_GPU", "", "a memory size per GPU such as 32G", r"^[1-9]\d*[KMGT]?$"),
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
    values that are set; GPUs (per node) as one --gres, tasks, CPUs and memory as
    task_layout() says."""
    tasks_per_node, cpus, mem = task_layout(resources)
    effective = dict(resources, cpus=cpus, mem=mem)
    options = ["{}={}".format(r.option, effective[r.key.lower()]) for r in RESOURCES
               if r.option and effective.get(r.key.lower())]
    if launcher(resources) != "none":
        options.append("--ntasks-per-node={}".format(tasks_per_node))
    gres = gpu_request(resources.get("gpu_type", ""), resources.get("gpus", ""))
    options += ["--gres=" + gres] if gres else []
    if requeues(resources):  # told GRACE seconds before the limit, the job saves and requeues itself
        options += ["--requeue", "--signal=B:USR1@{}".format(int(resources["time_limit_grace"]))]
    return options


def launcher(resources):
    return resources.get("launcher") or "none"


def task_layout(resources):
    """(tasks per node, CPUs per task, memory per node) of a request. LAUNCHER=srun
    runs one task per GPU, the others one task per node. With GPUs, CPUS_PER_GPU and
    MEM_PER_GPU (when set) scale with the GPUs of a task and of a node, so a 4-GPU
    job is not left with the 2 CPUs of a 1-GPU one; else CPUS and MEM hold."""
    gpus = int(resources.get("gpus") or 0)
    tasks = gpus if launcher(resources) == "srun" and gpus > 0 else 1
    cpus, mem = resources.get("cpus", ""), resources.get("mem", "")
    if gpus and resources.get("cpus_per_gpu"):
        cpus = str(int(resources["cpus_per_gpu"]) * (gpus // tasks))
    if gpus and resources.get("mem_per_gpu"):
        mem = scale_memory(resources["mem_per_gpu"], gpus)
    return tasks, cpus, mem


def scale_memory(size, factor):
    """"16G" times 4 -> "64G": a SLURM memory size (no unit: megabytes) scaled."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", size)
    return "{}{}".format(int(match.group(1)) * factor, match.group(2))


MASTER_PORT_RULE = "15000 + the job id modulo 15000"


def master_port(job_id):
    """The rendezvous port of a multi-task job (MASTER_PORT_RULE): from its id, so
    two jobs sharing a node do not collide, below Linux's ephemeral ports (32768+)."""
    return 15000 + int(re.match(r"\d*", str(job_id)).group(0) or 0) % 15000


def hostnames_argv(nodelist):
    return ["scontrol", "show", "hostnames", nodelist]


def launch_argv(resources, job_id, master_addr, port):
    """The command that starts the stage's command on every node of a job: empty
    for LAUNCHER=none. See launch_parts."""
    on_nodes, in_environment = launch_parts(resources, job_id, master_addr, port)
    return on_nodes + in_environment


def launch_parts(resources, job_id, master_addr, port):
    """(srun part, part that runs inside the job's environment or container) of the
    launch command: srun with one task per GPU, each told its RANK by rank-env.sh;
    or one srun task per node running torchrun, which starts one process per GPU
    (--no-python: the stage's command runs as it is, e.g. python3 train.py)."""
    if launcher(resources) == "none":
        return [], []
    tasks_per_node, _, _ = task_layout(resources)
    nodes = resources.get("nodes") or "1"
    srun = ["srun", "--kill-on-bad-exit=1", "--nodes={}".format(nodes), "--ntasks-per-node={}".format(tasks_per_node)]
    if launcher(resources) == "srun":
        return srun, ["bash", "expflow_runtime/rank-env.sh"]
    return srun, ["torchrun", "--nnodes={}".format(nodes),
                  "--nproc-per-node={}".format(max(int(resources.get("gpus") or 0), 1)),
                  "--rdzv-backend=c10d", "--rdzv-endpoint={}:{}".format(master_addr, port),
                  "--rdzv-id={}".format(job_id), "--no-python"]


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

# sinfo's StateLong is node_state_string() in lower case (src/common/slurm_protocol_defs.c):
# a base state, then at most one flag character (sinfo.1, NODE STATE CODES).
_NODE_BUSY = {"idle": "idle", "mixed": "mixed", "allocated": "allocated", "completing": "allocated"}
# The base states in which a node takes no new job: drained or draining, down, failing,
# in a maintenance or other reservation, planned by the backfill scheduler for a waiting
# job (23.02 on), blocked (24.05 on), rebooting, powering up or down, not yet configured.
_NODE_UNAVAILABLE = frozenset((
    "down", "drained", "draining", "drain", "fail", "failing", "inval", "unknown", "maint", "reboot",
    "reboot_issued", "cancel_reboot", "reserved", "planned", "blocked", "future", "perfctrs", "npc",
    "power_down", "power_up", "powered_down", "powering_down", "powering_up", "cloud", "external",
    "resume", "undrain", "dynamic_future", "dynamic_norm", "?",
))
# The one flag after which a node still takes jobs: "~" powered off to save power,
# which SLURM powers up for the job. Every other flag (* not responding, # powering up,
# ! and % powering down, $ maintenance, @ reboot pending, ^ reboot issued, - planned)
# keeps a new job off it now.
_NODE_STATE_RE = re.compile(r"^([a-z_?]+)([*~#!%$@^+-]?)$")


def node_state(state_long):
    """sinfo StateLong -> idle, mixed, allocated or down (takes no new job now). A
    state SLURM documents none of gives down and a WARNING."""
    text = state_long.strip().lower()
    match = _NODE_STATE_RE.match(text)
    base, flag = match.groups() if match else (text, "")
    if base in _NODE_UNAVAILABLE:
        return "down"
    if base not in _NODE_BUSY:
        warn_unknown("unknown node state {!r}: counted as taking no job".format(state_long.strip()))
        return "down"
    return _NODE_BUSY[base] if flag in ("", "~", "+") else "down"


def _add(counts, key, count):
    counts[key] = None if count is None or counts.get(key, 0) is None else counts.get(key, 0) + count


def _node_gpus(gres, gres_used):
    """Gres "gpu:h200:8" and GresUsed "gpu:h200:3(IDX:0-2)" -> (NodeGpus, ...). The
    count before (IDX:...) is the number in use (the index list may be cut at 64
    bytes, gres.c). A used entry whose type the node does not list belongs to the
    node's only GPU type; with several types its GPUs are unknown (None), and so
    are they while shards or MPS of the node are in use (SLURM gives a GPU to
    either whole-GPU jobs or shared ones, gres.shtml, but does not say which)."""
    totals = collections.OrderedDict()
    for item in parse_gres(gres, count_required=True):
        if item.name == "gpu":
            _add(totals, item.type, item.count)
    used = dict.fromkeys(totals, 0)
    for item in parse_gres(gres_used, count_required=True):
        if item.name in ("shard", "mps") and item.count != 0:
            warn_unknown("GPUs shared through {} are in use: idle GPUs unknown".format(item.name))
            used = dict.fromkeys(totals)
        if item.name != "gpu" or not totals:
            continue
        gtype = item.type if item.type in used else next(iter(totals)) if len(totals) == 1 else None
        if gtype is None:
            warn_unknown("GresUsed {!r} names GPUs that Gres {!r} does not: their use is unknown".format(
                gres_used, gres))
            return tuple(NodeGpus(t, count, None) for t, count in totals.items())
        _add(used, gtype, item.count)
    return tuple(NodeGpus(t, count, used[t]) for t, count in totals.items())


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


# Every user's jobs, one array task per line (--array): --Format (squeue -O, 20.11 to
# 25.11) because GPUs asked per job or per task (--gpus, --gpus-per-task) are only in
# tres-per-job and tres-per-task, not in tres-per-node (%b); tres-alloc is the TRES
# allocated, or requested while pending (src/squeue/print.c _print_job_tres_alloc).
SQUEUE_ALL_FIELDS = ("JobArrayID", "UserName", "Partition", "State", "NumNodes", "NumTasks",
                     "tres-per-node", "tres-per-job", "tres-per-task", "tres-alloc", "Reason")
SQUEUE_ALL_ARGV = ["squeue", "--noheader", "--all", "--array",
                   "--Format=" + ",".join(f + ":|" for f in SQUEUE_ALL_FIELDS)]

QueuedJob = collections.namedtuple("QueuedJob", "job_id user partitions state gpu_type gpus nodes reason")


_GPU_REQUEST_RE = re.compile(r"^(?:gres[:/])?gpu(?::|$)")


def _requested_gpus(job, nodes):
    """(type, GPUs) a job asked for, from its tres-per-* fields: per job, per node
    times nodes, per task times tasks. None GPUs when it cannot be told."""
    per = [("tres-per-job", 1), ("tres-per-node", nodes), ("tres-per-task", _int(job.get("NumTasks", "")))]
    types, total = [], 0
    for field, times in per:
        # only the GPUs: 23.11 on keeps "cpu:10,gres/gpu:gtx:1,license/iop1:1" in tres-per-task
        requested = ",".join(item for item in job.get(field, "").split(",") if _GPU_REQUEST_RE.match(item))
        gres = parse_gres(requested)
        count = gpu_count(gres)
        if gres and (count is None or not times):
            return ",".join(types), None
        total += (count or 0) * times
        types += [t for t in gpu_types(gres) if t not in types]
    return ",".join(types), total


def parse_squeue_all(text, fields=SQUEUE_ALL_FIELDS):
    """Output of SQUEUE_ALL_ARGV (or of another field list, given as --Format names;
    "%i|%u|%P|%T|%b|%D|%r" is ("JobArrayID", "UserName", "Partition", "State",
    "tres-per-node", "NumNodes", "Reason")) -> [QueuedJob]. gpus is the job's total:
    its tres-alloc when that counts GPUs, else what it asked for; None when neither
    says. partitions is a tuple (a pending job may name several)."""
    jobs = []
    for line in text.splitlines():
        values = line.strip().split("|")
        if values and values[-1] == "" and len(values) == len(fields) + 1:
            values.pop()  # --Format's "|" suffix ends every field
        if len(values) != len(fields):
            continue
        job = dict(zip(fields, values))
        node_count = max(_int(job.get("NumNodes", "")), 1)
        gpu_type, gpus = gpus_from_tres(job.get("tres-alloc", ""))
        if not gpus:
            gpu_type, gpus = _requested_gpus(job, node_count)
        jobs.append(QueuedJob(
            job_id=job["JobArrayID"], user=job.get("UserName", ""),
            partitions=tuple(p for p in job.get("Partition", "").split(",") if p), state=job.get("State", ""),
            gpu_type=gpu_type, gpus=gpus, nodes=node_count, reason=_no_reason(job.get("Reason", "")),
        ))
    return jobs


# src/api/allocate.c, slurm_job_will_run(): up to 24.11 "Job J to start at T using N
# processors on nodes X in partition P"; from 25.05 "Job J to start at T on cluster C
# a using N processors ..." (" on cluster C" only when it knows the cluster, and the
# stray "a" as printed). A heterogeneous job says "... using N processors on X".
_TEST_ONLY_RE = re.compile(
    r"Job (\d+) to start at (.+?)(?: on cluster (\S+))?(?: a)? using (\d+) processors on (?:nodes )?(\S+)"
    r"(?: in partition (\S+))?$", re.MULTILINE)


def parse_sbatch_test_only(stderr):
    """An accepted `sbatch --test-only` (its sentence on stderr) -> {start, nodes,
    partition}, or None when it said something else."""
    match = _TEST_ONLY_RE.search(stderr)
    if not match:
        if stderr.strip():
            warn_unknown("sbatch --test-only accepted the job but said {!r}: start and nodes unknown".format(
                stderr.strip().splitlines()[-1]))
        return None
    return {"start": match.group(2), "nodes": match.group(5), "partition": match.group(6) or ""}


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
