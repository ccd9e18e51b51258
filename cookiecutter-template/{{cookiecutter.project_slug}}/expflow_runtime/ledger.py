# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""The job ledger: every submission is written down BEFORE sbatch runs, in files
that are each written once, and an experiment-level lock keeps two submitters
apart.

    experiments/<id>/jobs/<stamp>-<token>.intent.json   before submitting: stage,
        attempt, resources, the job name SLURM will show (it carries the token)
    experiments/<id>/jobs/<stamp>-<token>.job.json      the job SLURM accepted
    experiments/<id>/jobs/<stamp>-<token>.void.json     nothing was submitted
    experiments/<id>/.lock                              who submits now (host, pid)

Each file is created whole or not at all (written under a temporary name, then
hard-linked into place, which fails if the name exists: atomic on NFS and
Lustre too), so two processes never overwrite each other's entry. An intent
without an outcome is a submission whose fate is not known yet (sbatch answered
late, Ctrl-C, a crash): state.py reconciles it with the scheduler by its job
name. metadata.json's "jobs" list of projects before 0.2.0 is still read.

Standard library only, Python 3.6+.
"""

import contextlib
import os
import signal
import time
from datetime import datetime

from . import files

JOURNAL = "jobs"
LOCK_FILE = ".lock"
# A submission that SLURM does not know this long after its intent was written
# was never made: sbatch gives up after EXPFLOW_SBATCH_TIMEOUT (60 s), and
# accounting lags a little. EXPFLOW_UNRESOLVED_SECONDS changes it.
UNRESOLVED_BOUND_SECONDS = 300
# A lock older than this is stale even when its holder runs on another host
# (no submission holds it longer; a sweep of thousands of points takes seconds).
LOCK_STALE_SECONDS = 600


class Busy(files.ProjectError):
    """Another command holds the experiment's lock."""


# ----------------------------------------------------------------- write-once files

def create_exclusive(path, data, exp_path=None):
    """Create path holding data as JSON, whole, unless it exists: True when this
    call created it. exp_path: the experiment of a file in its journal
    (files.write_experiment_json)."""
    return files.write_experiment_json(exp_path or os.path.dirname(path), path, data, exclusive=True)


def new_token():
    return os.urandom(4).hex()  # 8 hex digits, as uuid4's first 8, without importing uuid


def job_name(name, stage, token):
    """The job name SLURM shows; the token finds a submission whose answer was lost."""
    return "{}-{}.{}".format(name, stage, token)


def log_of(intent, job_id):
    """The job's log, relative to its experiment, from the intent's template."""
    return intent.get("log_template", "").replace("{job_id}", str(job_id))


# ----------------------------------------------------------------- the journal

def journal_dir(exp_path):
    return os.path.join(exp_path, JOURNAL)


def write_intent(exp_path, intent):
    """Record a submission about to be made; intent gains its file's name."""
    os.makedirs(journal_dir(exp_path), exist_ok=True)
    stamp = datetime.utcnow().strftime("%Y%m%dT%H%M%S.%f")
    intent = dict(intent, entry="{}-{}".format(stamp, intent["token"]), created=files.now_iso(),
                  created_epoch=time.time())
    if not create_exclusive(os.path.join(journal_dir(exp_path), intent["entry"] + ".intent.json"), intent, exp_path):
        raise files.ProjectError("{}: a journal entry named {} exists already".format(exp_path, intent["entry"]))
    return intent


def write_outcome(exp_path, intent, kind, data):
    """The outcome of an intent: kind "job" (SLURM accepted it) or "void" (never
    submitted). False when an outcome was written already (by a concurrent
    reconciliation): the first one stands."""
    path = os.path.join(journal_dir(exp_path), "{}.{}.json".format(intent["entry"], kind))
    other = "void" if kind == "job" else "job"
    if os.path.exists(os.path.join(journal_dir(exp_path), "{}.{}.json".format(intent["entry"], other))):
        return False
    return create_exclusive(path, dict(data, entry=intent["entry"]), exp_path)


def journal_jobs(exp_path):
    """The jobs of the journal, oldest first: each intent merged with its outcome;
    an intent without one has "unresolved": True; void ones are left out."""
    directory = journal_dir(exp_path)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    entries = {}
    for name in names:
        entry, _, kind = name[:-len(".json")].rpartition(".") if name.endswith(".json") else ("", "", "")
        if entry and kind in ("intent", "job", "void") and not name.startswith("."):
            data, _problem = files.read_json(directory + os.sep + name)  # not os.path.join: 10,000s of them
            if isinstance(data, dict):
                entries.setdefault(entry, {})[kind] = data
    jobs = []
    for entry in sorted(entries):
        parts = entries[entry]
        if "intent" not in parts or "void" in parts:
            continue
        job = dict(parts["intent"])
        if "job" in parts:
            job.update(parts["job"])
        else:
            job.update(unresolved=True, submitted=job.get("created", ""))
        job.setdefault("job_id", "")
        jobs.append(job)
    return jobs


def metadata(exp_path):
    """metadata.json with its jobs and the journal's (with_journal); unreadable
    is an error."""
    return with_journal(files.read_metadata(exp_path), exp_path)


def with_journal(found, exp_path):
    """found (an experiment's metadata) with "jobs": those metadata.json lists
    itself (projects before 0.2.0), then the journal's."""
    found["jobs"] = list(found.get("jobs", [])) + journal_jobs(exp_path)
    return found


def unresolved_age(job, now=None):
    """Seconds since an unresolved intent was written."""
    return (now or time.time()) - float(job.get("created_epoch") or 0)


def unresolved_bound():
    return float(os.environ.get("EXPFLOW_UNRESOLVED_SECONDS") or UNRESOLVED_BOUND_SECONDS)


# ----------------------------------------------------------------- the experiment lock

@contextlib.contextmanager
def locked(exp_path, exp_id, what):
    """Hold the experiment's lock while submitting, resuming or archiving; a
    second holder is refused at once with who holds it. A lock whose process is
    gone (same host) or that is older than LOCK_STALE_SECONDS is taken over."""
    path = os.path.join(exp_path, LOCK_FILE)
    mine = {"host": files.hostname(), "pid": os.getpid(), "since": files.now_iso(), "epoch": time.time(),
            "what": what, "token": new_token()}
    while not create_exclusive(path, mine):
        holder, _problem = files.read_json(path)
        if holder is None or not stale(holder):
            holder = holder or {}
            raise Busy("experiment {} is busy: {} (pid {} on {}) since {}; try again when it ends".format(
                exp_id, holder.get("what", "another command"), holder.get("pid", "?"), holder.get("host", "?"),
                holder.get("since", "?")))
        take_over(path, holder)
    try:
        yield
    finally:
        holder, _problem = files.read_json(path)
        if isinstance(holder, dict) and holder.get("token") == mine["token"]:
            os.unlink(path)


def stale(holder):
    if holder.get("host") == files.hostname() and not files.pid_alive(holder.get("pid")):
        return True
    return time.time() - float(holder.get("epoch") or 0) > LOCK_STALE_SECONDS


def take_over(path, holder):
    """Move a stale lock aside; if what was moved is not the stale lock seen (a
    live holder took it over meanwhile), put it back: that holder keeps it."""
    aside = "{}.stale-{}".format(path, new_token())
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, aside)
        moved, _problem = files.read_json(aside)
        if isinstance(moved, dict) and moved.get("token") != holder.get("token"):
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)
        os.unlink(aside)


# ----------------------------------------------------------------- Ctrl-C

@contextlib.contextmanager
def interrupts_deferred():
    """Hold Ctrl-C, TERM and HUP while a submission is made and written down:
    the command ends right after, with either no job or a recorded one."""
    received = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[number] = signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            raise KeyboardInterrupt
