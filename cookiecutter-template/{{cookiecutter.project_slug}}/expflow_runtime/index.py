# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""The harvest index, .expflow/harvest.index: a cache of what each experiment's
files say, so that make status and make results read again only the
experiments whose files changed. Never the source of truth: missing, stale,
damaged or from another release, it is rebuilt from experiments/ with the
same result. One line per experiment, in id order, fields split by tabs:

    crc  id  fingerprint  summary  state  data

fingerprint: a hash of the names in the experiment's directory with inode,
mtime_ns and size of what a harvest reads there (fingerprint() says what),
taken BEFORE its files are read, so a file written meanwhile is read again
next time. An experiment with an entry
changed less than SETTLE_SECONDS before the harvest started gets no
fingerprint (read again next time): a file can change twice within one tick
of the file system's clock. state: what its state needs (its newest jobs,
their records, problems); data: its config and metrics (null when make
status read the state only); summary: what a harvest needs before the rows
(job ids to ask the scheduler about, column names). crc: of the rest of the
line, so that a damaged line is read again, never a wrong row.

Standard library only, Python 3.6+.
"""

import collections
import contextlib
import hashlib
import json
import os
import tempfile
import time
import zlib

from . import files, ledger, state

INDEX_FILE = os.path.join(".expflow", "harvest.index")
FORMAT = "expflow-harvest-index 2"
SETTLE_SECONDS = 2
RENAMED_ONLY = ("runs", ledger.JOURNAL)  # directories whose files are only ever renamed or linked in
LOGS = "logs"
READ = (".json", ".jsonl")  # the top-level files a harvest reads

Summary = collections.namedtuple("Summary", "count asked unresolved params metrics warnings")


# ----------------------------------------------------------------- fingerprints

def fingerprint(path, with_logs):
    """(hash, newest mtime_ns) of what a harvest reads of an experiment: the
    names in its directory, with inode, mtime_ns and size of the files read
    (*.json, *.jsonl), of runs/ and jobs/, and of each log when with_logs.
    The runtime writes runs/ and jobs/ only by rename and link (jobrecord.py,
    ledger.py), which change their directory's mtime: one stat each, not a
    listing. ("", 0) when it cannot be read. Entries come in the directory's
    own order: another order costs one more read, no more."""
    found, newest, directories = [], 0, [("", path)]
    try:
        for prefix, directory in directories:  # grows while read: logs/ with_logs
            with os.scandir(directory) as entries:
                for entry in entries:
                    name = entry.name
                    if prefix or name.endswith(READ) or name in RENAMED_ONLY:
                        info = entry.stat(follow_symlinks=False)
                        found.append("{}{} {} {} {}".format(prefix, name, entry.inode(), info.st_mtime_ns,
                                                            info.st_size))
                        newest = max(newest, info.st_mtime_ns)
                    else:
                        found.append(name)
                        if with_logs and name == LOGS and not prefix:
                            directories.append((LOGS + "/", entry.path))
    except OSError:
        return "", 0
    return hashlib.sha1("\0".join(found).encode("utf-8", "surrogateescape")).hexdigest(), newest


def index_key(settings):
    """What every entry depends on besides its experiment's files: the format
    and the patterns that read metrics from logs."""
    patterns = [settings[k] for k in sorted(settings) if k.startswith("METRIC_PATTERN") and settings[k]]
    return json.dumps([FORMAT, patterns])


# ----------------------------------------------------------------- entries

def kept_jobs(jobs):
    """The jobs a harvest needs: the newest settled one of each stage and every
    unresolved one (reconcile.py settles them), in their order."""
    newest = {job.get("stage"): number for number, job in enumerate(jobs) if not job.get("unresolved")}
    return [dict(job) for number, job in enumerate(jobs)
            if job.get("unresolved") or newest.get(job.get("stage")) == number]


def state_part(experiment):
    metadata = experiment["metadata"]
    jobs = kept_jobs(metadata.get("jobs", []))
    for job in jobs:
        job.pop("sbatch", None)  # the argv, as long as a command line: the record keeps it
    keys = {(job.get("stage"), str(job.get("job_id"))) for job in jobs}
    return {"sweep": metadata.get("sweep", ""), "sweep_values": metadata.get("sweep_values"),
            "description": metadata.get("description", ""), "jobs": jobs,
            "records": [record for key, record in sorted(experiment["records"].items()) if key in keys],
            "problems": experiment["state_problems"], "unreadable": experiment["unreadable"]}


def data_part(experiment):
    return {"config": experiment["config"], "metrics": experiment["metrics"],
            "problems": experiment["data_problems"]}


def summary_of(experiment, with_data):
    asked = sorted(state.asked_jobs(experiment))
    unresolved = any(job.get("unresolved") for job in experiment["metadata"].get("jobs", []))
    problems = experiment["state_problems"] + (experiment["data_problems"] if with_data else [])
    params = sorted(experiment["config"]) if with_data else None
    metrics = sorted(experiment["metrics"]) if with_data else None
    return [asked, int(unresolved), params, metrics, int(bool(problems))]


def entry_line(exp_id, fp, experiment, with_data):
    """(line of the index as bytes, its summary) for a freshly read experiment."""
    summary = summary_of(experiment, with_data)
    fields = [exp_id, fp, json.dumps(summary), json.dumps(state_part(experiment)),
              json.dumps(data_part(experiment)) if with_data else "null"]
    return sealed("\t".join(fields)), summary


def sealed(rest):
    return "{:08x}\t{}\n".format(zlib.crc32(rest.encode("ascii")), rest).encode("ascii")


def read_entry(line):
    """(id, fingerprint, fields, line) of an index line, or None when it is damaged."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text.endswith("\n"):
        return None  # cut short
    crc, _, rest = text[:-1].partition("\t")
    fields = rest.split("\t")
    if len(fields) != 5 or crc != "{:08x}".format(zlib.crc32(rest.encode("ascii"))):
        return None
    return fields[0], fields[1], fields, line


def old_entries(path, key):
    """The entries of the index as the last harvest left it, in id order; none
    when it is missing or of another format; damaged lines are left out."""
    try:
        handle = open(path, "rb")
    except OSError:
        return
    with handle:
        if handle.readline() != (key + "\n").encode("utf-8"):
            return
        last = ""
        for line in handle:
            entry = read_entry(line)
            if entry and entry[0] > last:
                last = entry[0]
                yield entry


class Lookup:
    """Entries of the old index by id, for ids asked in increasing order (both
    are sorted: one pass over each)."""

    def __init__(self, entries):
        self.entries = entries
        self.current = next(entries, None)

    def take(self, exp_id):
        while self.current is not None and self.current[0] < exp_id:
            self.current = next(self.entries, None)
        if self.current is None or self.current[0] != exp_id:
            return None
        found, self.current = self.current, next(self.entries, None)
        return found


# ----------------------------------------------------------------- bringing it up to date

def refresh(root, settings, with_data, out):
    """Write the index of every experiment to out, reading again only those
    whose fingerprint changed (with_data: config and metrics too) -> Summary."""
    patterns = state.metric_patterns(settings)
    key = index_key(settings)
    recent = int((time.time() - SETTLE_SECONDS) * 1e9)
    old = Lookup(old_entries(os.path.join(root, INDEX_FILE), key))
    out.write((key + "\n").encode("utf-8"))
    count, asked, unresolved, params, metrics, warnings = 0, set(), [], set(), set(), False
    for exp_id in files.list_experiment_ids(root):
        fp, newest = fingerprint(files.experiment_dir(root, exp_id), bool(patterns))
        fp = fp if fp and newest < recent else ""
        entry = old.take(exp_id)
        if entry and fp and entry[1] == fp and (entry[2][4] != "null" or not with_data):
            line, summary = entry[3], json.loads(entry[2][2])
        else:
            experiment = state.load_experiment(root, exp_id, patterns, with_data)
            line, summary = entry_line(exp_id, fp or "-", experiment, with_data)
        out.write(line)
        count += 1
        asked.update(map(tuple, summary[0]))
        if summary[1]:
            unresolved.append(exp_id)
        params.update(summary[2] or ())
        metrics.update(summary[3] or ())
        warnings = warnings or bool(summary[4])
    return Summary(count, asked, unresolved, params, metrics, warnings)


def experiments(handle, root):
    """Every experiment of an index written by refresh, one at a time, in the
    shape state.load_experiment gives (records of the newest jobs only)."""
    handle.seek(0)
    handle.readline()
    for line in handle:
        _crc, exp_id, _fp, _summary, state_text, data_text = line.decode("ascii").rstrip("\n").split("\t")
        part = json.loads(state_text)
        data = json.loads(data_text) or {"config": {}, "metrics": {}, "problems": []}
        yield {
            "id": exp_id, "path": os.path.join(files.experiments_dir(root), exp_id),
            "metadata": {"jobs": part["jobs"], "sweep": part["sweep"], "sweep_values": part["sweep_values"],
                         "description": part["description"]},
            "records": {(r["stage"], str(r["job_id"])): r for r in part["records"]},
            "config": data["config"], "metrics": data["metrics"], "unreadable": part["unreadable"],
            "state_problems": part["problems"], "data_problems": data["problems"],
            "problems": part["problems"] + data["problems"],
        }


@contextlib.contextmanager
def snapshot(root, settings, with_data):
    """(Summary, handle): the index brought up to date and saved (atomically:
    a concurrent harvest sees the old one or this one); handle reads this one
    back, whatever another harvest saves meanwhile. When it cannot be saved (a
    lab-mate's project, a full disk) the harvest goes on from a private copy."""
    path = os.path.join(root, INDEX_FILE)
    try:
        handle, summary = saved(root, settings, with_data, path)
    except OSError:
        handle = tempfile.TemporaryFile()
        try:
            summary = refresh(root, settings, with_data, handle)
        except OSError as exc:
            handle.close()
            raise files.cannot_write(tempfile.gettempdir(), exc) from None
    with handle:
        yield summary, handle


def saved(root, settings, with_data, path):
    """(open handle, Summary) of the index written beside path and renamed over it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    handle = os.fdopen(fd, "w+b")
    try:
        summary = refresh(root, settings, with_data, handle)
        handle.flush()
        os.fchmod(handle.fileno(), files.file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        with contextlib.suppress(OSError):
            handle.close()  # flushes what is left: on a full disk, fails again
        raise
    return handle, summary
