# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""The harvest index, .expflow/harvest.index: a cache of what each experiment's
files say, so that make status and make results read again only the
experiments whose files changed. Never the source of truth: missing, stale,
damaged or from another release, it is rebuilt from experiments/ with the
same result. Its key, its data file's line, then one line per experiment,
in id order, fields split by tabs:

    crc  id  names  stamps  summary  kind  offset  length

names: the files of the experiment that its jobs write (relative paths: its
results and metrics files, and its logs when METRIC_PATTERN* read them);
stamps: inode, mtime_ns and size of the experiment's directory, "|", those of
each of those files, taken BEFORE they were read, so a file written meanwhile
is read again next time (make status checks the directory only). Checking an
entry is one stat per stamp, no listing. The runtime writes every other file
the harvest reads (metadata.json, config.json, jobs/, runs/) by a rename
through the experiment's own directory (files.write_experiment_json), and a
file added, removed or renamed there changes the directory's stamp; a job
writes its results in place, which changes their own. An experiment changed
less than SETTLE_SECONDS before the harvest started gets stamps "-" (read
again next time): a file can change twice within one tick of the file
system's clock. summary: what a harvest needs before the rows (job ids to
ask the scheduler about, column names); kind: "d" when its data was read
too, "s" for its state only (make status); offset and length: where its blob
is in the data file, .expflow/harvest.data-*, a sealed line "crc id state
data" (state: its newest jobs, their records, problems; data: its config and
metrics). Blobs are appended, never moved (DataFile). crc: of the rest of
the line, so that a damaged line is read again, never a wrong row. With
PRELOAD_ENTRIES experiments or more, a forked child checks the later half
(Preload), on a second core.

Standard library only, Python 3.6+.
"""

import collections
import contextlib
import functools
import json
import os
import signal
import sys
import time
import zlib

from . import files, state

INDEX_FILE = os.path.join(".expflow", "harvest.index")
DATA_PREFIX = "harvest.data-"
FORMAT = "expflow-harvest-index 5"
COMPACT_BYTES = 1 << 20  # dead blobs a data file may hold beyond as many live ones
STRAY_SECONDS = 600
SETTLE_SECONDS = 2
LOGS = "logs"
UNSETTLED = "-"  # the stamps of an entry read again next time
PRELOAD_ENTRIES = 2000  # below, a second process to check half of them costs more than it saves

Summary = collections.namedtuple("Summary", "count asked unresolved params metrics warnings")
Entry = collections.namedtuple("Entry", "id names stamps summary kind offset length line")
Fingerprint = collections.namedtuple("Fingerprint", "names stamps newest present")


# ----------------------------------------------------------------- fingerprints

def data_names(present):
    """The files a job writes that a harvest reads, of the names in an
    experiment's directory: per stage, its results JSON or else its metrics
    JSONL (state.stage_metrics)."""
    names = []
    for stage in state.STAGES:
        results, series = "{}_results.json".format(stage), "{}_metrics.jsonl".format(stage)
        names += [results] if results in present else [series] if series in present else []
    return names


def fingerprint(path, with_data, with_logs):
    """Fingerprint of what a harvest is about to read of an experiment (each
    directory stamped before it is listed), or None when it cannot be read.
    stamps: the directory's, "|", those of the files its jobs write (make
    status checks the first part only). present: the names in its directory
    (sorted), for state.load_experiment."""
    prefix = path + os.sep
    try:
        top = os.lstat(path)  # a link put in its place is another stamp, never followed
        present = sorted(os.listdir(path))
        names = data_names(present) if with_data else []
        infos = [os.stat(prefix + name) for name in names]
        if with_data and with_logs and LOGS in present:
            infos.append(os.stat(prefix + LOGS))  # stamped before it is listed, as the experiment
            logs = [LOGS + "/" + log for log in sorted(os.listdir(prefix + LOGS))]
            names += [LOGS] + logs
            infos += [os.stat(prefix + log) for log in logs]
    except OSError:
        return None
    newest = max(info.st_mtime_ns for info in [top] + infos)
    return Fingerprint(names, stamps_of([top]) + "|" + stamps_of(infos), newest, present)


def stamps_of(infos):
    return ",".join(["%d:%d:%d" % (info.st_ino, info.st_mtime_ns, info.st_size) for info in infos])


def current_stamps(base, exp_id, names, with_data):
    """What an entry's stamps must be (with_data) or start with (make status)
    for the experiment to be unchanged: its directory's stamp, "|", and with
    data those of the files named (the common case, one file, in one
    format); None when one cannot be taken. base: where the experiments
    are (experiments())."""
    fd, prefix = base
    try:
        top = os.lstat(prefix + exp_id, dir_fd=fd)
        if with_data and len(names) == 1:
            info = os.stat(prefix + exp_id + os.sep + names[0], dir_fd=fd)
            return "%d:%d:%d|%d:%d:%d" % (top.st_ino, top.st_mtime_ns, top.st_size,
                                          info.st_ino, info.st_mtime_ns, info.st_size)
        infos = [os.stat(prefix + exp_id + os.sep + name, dir_fd=fd) for name in names] if with_data else []
    except OSError:
        return None
    mine = "%d:%d:%d|" % (top.st_ino, top.st_mtime_ns, top.st_size)
    return mine + stamps_of(infos) if with_data else mine


def unchanged(stamps, current, with_data):
    """Whether an entry's stamps are those current_stamps() took."""
    return current is not None and (stamps == current if with_data else stamps.startswith(current))


@contextlib.contextmanager
def experiments(root):
    """(descriptor, prefix) that current_stamps() finds experiments by: experiments/
    held open, so that each stat walks one name rather than the whole path
    (an eighth of the stats' time), or by its path where that cannot be."""
    path = files.experiments_dir(root)
    fd = None
    if os.lstat in os.supports_dir_fd:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
    try:
        yield (fd, "") if fd is not None else (None, path + os.sep)
    finally:
        if fd is not None:
            os.close(fd)


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


# JSON of what files gave, trees with no cycle: no check for one (a tenth of the encoding)
encode = json.JSONEncoder(check_circular=False).encode


def sealed_line(rest):
    """rest, ASCII fields split by tabs, after its crc: a line without its newline."""
    return "{:08x}\t{}".format(zlib.crc32(rest.encode("ascii")), rest)


def sealed(rest):
    return (sealed_line(rest) + "\n").encode("ascii")


def unsealed(line, count):
    """The count fields of a line sealed() made, or None when it is damaged."""
    rest = line[9:-1]
    try:
        if line[8:9] != b"\t" or line[-1:] != b"\n" or int(line[:8], 16) != zlib.crc32(rest):
            return None  # cut short, or damaged
        fields = rest.decode("ascii").split("\t")
    except (ValueError, UnicodeDecodeError):
        return None
    return fields if len(fields) == count else None


class SealedLines:
    """The sealed lines of a body (bytes), or of a file open after its head
    (read as they come): parsed() gives (fields, line as text without its
    newline, its size in bytes) of each line, fields and line None for a
    damaged one. When crc (of the whole body, hex, from the file's head)
    matches, no line is checked on its own, and first_at(id) finds where an
    id's line is, or would be."""

    def __init__(self, body, count, crc=""):
        self.count = count
        try:
            text = body.decode("ascii") if crc and zlib.crc32(body) == int(crc, 16) else None
        except ValueError:  # a head or a body that is not ours: each line is checked
            text = None
        self.intact = text is not None
        if self.intact:
            self.lines = text.split("\n")[:-1]
        else:
            self.lines = body.splitlines(keepends=True) if isinstance(body, bytes) else body

    def parsed(self):
        if not self.intact:
            for line in self.lines:
                fields = unsealed(line, self.count)
                yield fields, fields and line[:-1].decode("ascii"), len(line)
            return
        for line in self.lines:
            yield line[9:].split("\t"), line, len(line) + 1

    def first_at(self, start):
        """The place of the first line whose id is start or later (ids ascend)."""
        low, high = 0, len(self.lines)
        while low < high:
            middle = (low + high) // 2
            if line_id(self.lines[middle]) < start:
                low = middle + 1
            else:
                high = middle
        return low


def entries(lines, kind=Entry):
    """Every entry of SealedLines, as kind (fields, then the line), in id
    order: damaged or out-of-order lines are left out."""
    last, count = "", len(kind._fields) - 1
    for fields, line, _size in lines.parsed():
        if fields and len(fields) == count and fields[0] > last:
            last = fields[0]
            yield kind(*fields, line)


def old_entries(path, key, kind=Entry):
    """The entries of a file of sealed lines whose header is key (the index as
    the last harvest left it), in id order; none when it is missing or its
    header is another."""
    try:
        handle = open(path, "rb")
    except OSError:
        return
    with handle:
        if handle.readline() == (key + "\n").encode("utf-8"):
            yield from entries(SealedLines(handle, len(kind._fields) - 1), kind)


class Lookup:
    """Entries of an index (or any items with an id) by id, for ids asked in
    increasing order (both are sorted: one pass over each)."""

    def __init__(self, items):
        self.items = items
        self.current = next(items, None)

    def take(self, exp_id):
        while self.current is not None and self.current.id < exp_id:
            self.current = next(self.items, None)
        if self.current is None or self.current.id != exp_id:
            return None
        found, self.current = self.current, next(self.items, None)
        return found


class Memo(dict):
    """parse(text) of texts that repeat (the names and summaries of 10,000
    experiments are mostly alike), each parsed once."""

    def __init__(self, parse=json.loads):
        super().__init__()
        self.parse = parse

    def __missing__(self, text):
        self[text] = value = self.parse(text)
        return value


# ----------------------------------------------------------------- the data file

class DataFile:
    """The data file of an index: blobs (sealed lines "crc id state data")
    appended, never moved, read back by offset. A blob that is not what its
    entry says (a damaged file, one another harvest replaced) reads as None."""

    def __init__(self, fd, name, new=False):
        self.fd, self.name, self.new = fd, name, new

    @classmethod
    def opened(cls, directory, name):
        """The data file of the last index, to read and append to, or None."""
        if not name.startswith(DATA_PREFIX) or os.sep in name:
            return None
        try:
            return cls(os.open(os.path.join(directory, name), os.O_RDWR | os.O_APPEND), name)
        except OSError:
            return None

    @classmethod
    def created(cls, directory):
        handle, path = files.temp_beside(os.path.join(directory, DATA_PREFIX), "wb", prefix=DATA_PREFIX)
        handle.close()  # opened again to append (O_APPEND), which open() cannot ask for
        return cls(os.open(path, os.O_RDWR | os.O_APPEND), os.path.basename(path), new=True)

    def size(self):
        return os.fstat(self.fd).st_size

    def append(self, blob):
        """-> its offset: where this descriptor's appending write ended, less its
        length (another harvest may append to the same file meanwhile)."""
        written = os.write(self.fd, blob)
        if written != len(blob):
            raise OSError(28, "short write to the harvest index's data")
        return os.lseek(self.fd, 0, os.SEEK_CUR) - written

    def read(self, exp_id, offset, length):
        """[state, data] as JSON texts of the blob at offset, or None."""
        try:
            fields = unsealed(os.pread(self.fd, length, offset), 3)
        except (OSError, OverflowError, ValueError):
            return None
        return fields[1:] if fields and fields[0] == exp_id else None

    def close(self):
        os.close(self.fd)


def blob(exp_id, parts):
    """A blob of the data file: parts, its state and data as JSON texts."""
    return sealed("\t".join([exp_id] + parts))


def entry_line(exp_id, names, stamps, summary, kind, offset, length):
    return sealed_line("\t".join([exp_id, names, stamps, summary, kind, str(offset), str(length)]))


def old_index(root, key):
    """(data file name, the bytes its entries point at, the data file's size
    then, its lines (SealedLines)) of the index the last harvest left, or
    ("", 0, 0, None) when it is missing, damaged at its head, or of another
    release or settings."""
    try:
        handle = open(os.path.join(root, INDEX_FILE), "rb")
    except OSError:
        return "", 0, 0, None
    with handle:
        head = unsealed(handle.readline(), 5) if handle.readline() == (key + "\n").encode("utf-8") else None
        if not head or head[0] != "data" or not (head[2].isdigit() and head[3].isdigit()):
            return "", 0, 0, None
        return head[1], int(head[2]), int(head[3]), SealedLines(handle.read(), len(Entry._fields) - 1, head[4])


def data_head(name, live, size, crc):
    """The index's second line: its data file, how many of its bytes are live,
    its size when the index was written and the crc of the entries' lines,
    fixed in width so that it is written again in place at the end."""
    return sealed("data\t{}\t{:016d}\t{:016d}\t{:08x}".format(name, live, size, crc))


# ----------------------------------------------------------------- bringing it up to date

def refresh(root, settings, with_data, out, directory):
    """Write the index of every experiment to out and its data file in
    directory, reading again only the experiments whose stamps changed
    (with_data: config and metrics too) -> (Summary, DataFile, the old one's
    name when this one replaces it). Unchanged entries keep their lines and
    their blobs; when the data file holds more than twice what the entries
    point at (what was read again accumulates), the live blobs are copied to
    a new one."""
    patterns = state.metric_patterns(settings)
    key = index_key(settings)
    old_name, old_live, old_size, old_lines = old_index(root, key)
    source = DataFile.opened(directory, old_name)
    old = Lookup(entries(old_lines) if old_lines is not None else iter(()))
    first = old.current
    if source is not None and (source.size() < old_size or first is not None and source.read(
            first.id, int(first.offset), int(first.length)) is None):
        source.close()  # cut short, or its first blob is not what the index says: rewritten or replaced
        source = None
    data, replaced = source, ""
    if source is None or source.size() > 2 * old_live + COMPACT_BYTES:
        data, replaced = DataFile.created(directory), old_name
    if source is None:
        old, old_lines = Lookup(iter(())), None
    out.write((key + "\n").encode("utf-8"))
    try:
        summary = entries_written(root, with_data, out, old, old_lines, source, data, patterns)
    except BaseException:
        if data is not source:
            data.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, data.name))
        raise
    finally:
        if source is not None and source is not data:
            source.close()
    return summary, data, replaced


def entries_written(root, with_data, out, old, old_lines, source, data, patterns):
    """refresh's work on each experiment -> Summary. old: a Lookup of the
    old entries, old_lines: their SealedLines (None: no old index)."""
    recent = int((time.time() - SETTLE_SECONDS) * 1e9)
    head_at = out.tell()
    out.write(data_head(data.name, 0, 0, 0))
    names_of, tally = Memo(), Tally(out)
    ids = files.list_experiment_ids(root)  # no links among them
    with experiments(root) as base:

        def fresh(exp_id, entry):
            """None when the experiment did not change since its old entry, else
            it read again from its files (a Reread)."""
            if entry and entry.stamps != UNSETTLED and (entry.kind == "d" or not with_data) and unchanged(
                    entry.stamps, current_stamps(base, exp_id, names_of[entry.names], with_data), with_data):
                return None
            return read_again(root, exp_id, with_data, patterns, recent)

        def written(exp_id):
            entry = old.take(exp_id)
            found = fresh(exp_id, entry)
            line = placed(found, data) if found else None
            if line is None and data is not source:  # unchanged, into a new data file: its blob copied
                line = moved(entry, source, data) or placed(read_again(root, exp_id, with_data, patterns, recent), data)
            if line is None:  # unchanged: its old line
                tally.add(exp_id, entry.line, entry.summary, entry.length)
            else:
                fields = line.split("\t")
                tally.add(exp_id, line, fields[4], fields[7])

        # a data file being compacted has every blob copied: this process does it all
        with Preload(ids, old_lines if data is source else None, fresh) as preload:
            for exp_id in ids[:preload.start]:
                written(exp_id)
            if not preload.answered(tally, old_lines, data):
                for exp_id in ids[preload.start:]:
                    written(exp_id)
    tally.lines.flush()
    out.seek(head_at)
    out.write(data_head(data.name, tally.live, data.size(), tally.lines.crc))
    out.seek(0, os.SEEK_END)
    return summed(tally.count, tally.unresolved, tally.summaries.values())


class Tally:
    """What refresh writes (its lines: a LineWriter) and what it sums up:
    how many entries, the bytes of the data file they point at, the ids of
    those with a submission's answer lost, each distinct summary."""

    def __init__(self, out):
        self.lines, self.summaries = LineWriter(out), Memo()
        self.count, self.live, self.unresolved = 0, 0, []

    def add(self, exp_id, line, summary, length):
        """An entry's line, its summary as text and its blob's length (text)."""
        self.lines.add(line)
        self.count, self.live = self.count + 1, self.live + int(length)
        if self.summaries[summary][1]:
            self.unresolved.append(exp_id)

    def add_run(self, lines, live, unresolved):
        """Old lines kept as they were, their blobs' bytes and unresolved ids
        (their summaries come on their own: add_summary)."""
        self.lines.add_many(lines)
        self.count, self.live = self.count + len(lines), self.live + live
        self.unresolved += unresolved

    def add_summary(self, text):
        self.summaries[text]  # parsed once, as Memo does


class Preload:
    """git's preload-index, for a harvest: a forked child checks the later
    half of the experiments against their old entries and reads again those
    that changed, while this process does the earlier half: the stat calls
    and the reading on two cores. Its answer comes in blocks: runs of old
    lines kept as they were (one join each, not one step per entry) and the
    experiments read again, whose blobs this process appends to the data
    file (two processes appending to one file at once may overwrite each
    other's bytes on NFS). start: where in the ids this process stops (all
    of them when no child was started: few experiments, one core, no fork,
    no intact old index, a data file being compacted). The child parses its
    copy (a fork's) of this process's old lines from the split on; it
    writes nothing but its answer."""

    def __init__(self, ids, old_lines, fresh):
        self.pid = self.answers = None
        self.start = len(ids)
        if len(ids) < PRELOAD_ENTRIES or old_lines is None or not old_lines.intact or not hasattr(os, "fork") \
                or usable_cpus() < 2 or threading_started():
            return
        later = ids[len(ids) // 2:]
        self.answers, write_end = os.pipe()
        try:
            self.pid = os.fork()
        except OSError:
            self.pid = None
        if self.pid == 0:
            os.close(self.answers)
            preload_child(later, old_lines, fresh, write_end)  # never returns
        os.close(write_end)
        if self.pid is not None:
            self.start = len(ids) - len(later)

    def answered(self, tally, old_lines, data):
        """Add the child's answer to tally, the blobs of the experiments it
        read again appended to data -> whether it came whole (else nothing
        was added, and this process is to do the later half too)."""
        if self.pid is None:
            return False
        chunks = []
        with contextlib.suppress(OSError):
            for chunk in iter(functools.partial(os.read, self.answers, 1 << 16), b""):
                chunks.append(chunk)
        self.close(finished=True)
        records = b"".join(chunks).decode("ascii", "replace").split("\n")
        if records[-2:] != [".", ""]:
            return False
        records = iter(records[:-2])
        for record in records:
            kind, _, rest = record.partition("\t")
            if kind == "L":  # an experiment read again, then its blob
                found = Reread(*rest.split("\t"), (next(records) + "\n").encode("ascii"))
                tally.add(found.id, placed(found, data), found.summary, len(found.blob))
            elif kind == "R":  # a run of old lines kept: start, end, their blobs' bytes, unresolved ids
                start, end, live, unresolved = rest.split("\t")
                unresolved = unresolved.split(",") if unresolved else []
                tally.add_run(old_lines.lines[int(start):int(end)], int(live), unresolved)
            elif kind == "S":
                tally.add_summary(rest)
        return True

    def close(self, finished=False):
        if self.answers is not None:
            os.close(self.answers)  # a child still writing gets EPIPE and ends
            self.answers = None
        if self.pid is not None:
            if not finished:
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(self.pid, 0)
            self.pid = None

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def preload_child(ids, old_lines, fresh, answers):
    """Preload's child: for ids (in order), "R<TAB>start<TAB>end<TAB>bytes<TAB>
    unresolved ids" for each run of old lines [start, end) kept as they were,
    "L<TAB>id<TAB>names<TAB>stamps<TAB>summary<TAB>kind" then the blob for
    each experiment read again; then "S<TAB>summary" for each distinct
    summary of the runs, and "."; written to answers. It never returns (its
    copies of the parent's open files are left unflushed)."""
    try:
        lines, summaries, records, run = old_lines.lines, Memo(), [], None
        at = old_lines.first_at(ids[0])
        for exp_id in ids:
            while at < len(lines) and line_id(lines[at]) < exp_id:
                at += 1  # an experiment gone: its line ends a run
            entry = Entry(*lines[at][9:].split("\t"), lines[at]) if at < len(lines) and \
                line_id(lines[at]) == exp_id else None
            found = fresh(exp_id, entry)
            if run is not None and (found is not None or run[1] != at):
                records.append(run_record(*run))  # the run ends before this line
                run = None
            if found is not None:
                records += ["L\t" + "\t".join(found[:5]), found.blob[:-1].decode("ascii")]
            else:
                run = run or [at, at, 0, []]
                run[1], run[2] = at + 1, run[2] + int(entry.length)
                if summaries[entry.summary][1]:
                    run[3].append(exp_id)
            if entry is not None:
                at += 1
        if run:
            records.append(run_record(*run))
        records += ["S\t" + text for text in summaries] + ["."]
        payload = ("\n".join(records) + "\n").encode("ascii")
        while payload:
            payload = payload[os.write(answers, payload):]
    finally:
        os._exit(0)


def run_record(start, end, live, unresolved):
    return "R\t{}\t{}\t{}\t{}".format(start, end, live, ",".join(unresolved))


def line_id(line):
    """The id of a sealed line (its second field)."""
    return line[9:line.find("\t", 9)]


def usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threading_started():
    """Whether another thread runs (a fork copies only this one)."""
    threading = sys.modules.get("threading")
    return threading is not None and threading.active_count() > 1


def moved(entry, source, data):
    """The line of an entry whose blob is copied to a new data file, or None
    when it cannot be read."""
    found = source.read(entry.id, int(entry.offset), int(entry.length))
    return found and placed(Reread(*entry[:5], blob(entry.id, found)), data)


def read_again(root, exp_id, with_data, patterns, recent):
    """An experiment read from its files -> Reread: the fields of its line
    before its blob's place (its stamps UNSETTLED when it changed since
    recent), and its blob."""
    path = os.path.join(files.experiments_dir(root), exp_id)
    found = fingerprint(path, with_data, bool(patterns))
    experiment = state.load_experiment(root, exp_id, patterns, with_data, found and found.present)
    settled = found is not None and found.newest < recent
    written = blob(exp_id, [encode(state_part(experiment)), encode(data_part(experiment)) if with_data else "null"])
    return Reread(exp_id, encode(found.names if found else []), found.stamps if settled else UNSETTLED,
                  encode(summary_of(experiment, with_data)), "d" if with_data else "s", written)


Reread = collections.namedtuple("Reread", "id names stamps summary kind blob")


def placed(found, data):
    """The line of an experiment read again (a Reread), its blob appended to data."""
    return entry_line(*found[:5], data.append(found.blob), len(found.blob))


class LineWriter:
    """Lines (ASCII text, without their newline) written to a binary file a
    few thousand at a time, and the crc of all their bytes."""

    def __init__(self, out):
        self.out, self.chunk, self.crc = out, [], 0

    def add(self, line):
        self.chunk.append(line)
        if len(self.chunk) == 4096:
            self.flush()

    def add_many(self, lines):
        self.flush()
        self.chunk = lines
        self.flush()

    def flush(self):
        if self.chunk:
            data = ("\n".join(self.chunk) + "\n").encode("ascii")
            self.crc = zlib.crc32(data, self.crc)
            self.out.write(data)
            self.chunk = []


def summed(count, unresolved, summaries):
    """The Summary of a harvest from each distinct summary of its entries
    (most are alike: each is added once)."""
    asked, params, metrics, warnings = set(), set(), set(), False
    for summary in summaries:
        asked.update(map(tuple, summary[0]))
        params.update(summary[2] or ())
        metrics.update(summary[3] or ())
        warnings = warnings or bool(summary[4])
    return Summary(count, asked, unresolved, params, metrics, warnings)


class View:
    """What a harvest reads of the index it brought up to date: entries()
    gives each Entry, in id order, read back from its file (its own lines,
    just written: no check, and the fields the rows need only);
    experiment(entry) its experiment, from the data file or, when its blob
    cannot be read, from its files."""

    def __init__(self, root, handle, data, patterns, with_data):
        self.root, self.handle, self.data = root, handle, data
        self.patterns, self.with_data = patterns, with_data

    def entries(self):
        self.handle.seek(0)
        self.handle.readline()
        self.handle.readline()
        for line in self.handle:
            yield Entry(*line[9:-1].decode("ascii").split("\t"), "")

    def experiment(self, entry):
        """The experiment of an entry, in the shape state.load_experiment gives
        (records of the newest jobs only)."""
        found = self.data.read(entry.id, int(entry.offset), int(entry.length))
        if found is None:
            return state.load_experiment(self.root, entry.id, self.patterns, self.with_data)
        part, data = json.loads(found[0]), json.loads(found[1]) or {"config": {}, "metrics": {}, "problems": []}
        return {
            "id": entry.id, "path": os.path.join(files.experiments_dir(self.root), entry.id),
            "metadata": {"jobs": part["jobs"], "sweep": part["sweep"], "sweep_values": part["sweep_values"],
                         "description": part["description"]},
            "records": {(r["stage"], str(r["job_id"])): r for r in part["records"]},
            "config": data["config"], "metrics": data["metrics"], "unreadable": part["unreadable"],
            "state_problems": part["problems"], "data_problems": data["problems"],
            "problems": part["problems"] + data["problems"],
        }


@contextlib.contextmanager
def snapshot(root, settings, with_data):
    """(Summary, View): the index brought up to date and saved (atomically:
    a concurrent harvest sees the old one or this one; both append to the
    data file, where blobs never move); the View reads this one back, whatever
    another harvest saves meanwhile. When it cannot be saved (a lab-mate's
    project, a full disk) the harvest goes on from a private copy, read anew."""
    directory = os.path.join(root, os.path.dirname(INDEX_FILE))
    try:
        handle, summary, data = saved(root, settings, with_data, directory)
    except OSError:
        import tempfile  # here: only a harvest that cannot save its index needs it
        private = tempfile.mkdtemp()
        handle = tempfile.TemporaryFile()
        try:
            summary, data, _ = refresh(root, settings, with_data, handle, private)
        except OSError as exc:
            handle.close()
            raise files.cannot_write(tempfile.gettempdir(), exc) from None
        finally:
            for name in os.listdir(private):
                os.unlink(os.path.join(private, name))  # its descriptor stays open
            os.rmdir(private)
    with handle:
        try:
            yield summary, View(root, handle, data, state.metric_patterns(settings), with_data)
        finally:
            data.close()


def saved(root, settings, with_data, directory):
    """(open handle, Summary, DataFile) of the index written beside its path
    and renamed over it; a data file it replaced is removed, and strays
    (left_behind)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(root, INDEX_FILE)
    handle, tmp = files.temp_beside(path, "w+b")
    data = None
    try:
        summary, data, replaced = refresh(root, settings, with_data, handle, directory)
        handle.flush()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        with contextlib.suppress(OSError):
            handle.close()  # flushes what is left: on a full disk, fails again
        if data is not None:
            data.close()
            if data.new:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, data.name))
        raise
    left_behind(directory, data.name, replaced)  # at every harvest: a stray is not left for the next cold one
    return handle, summary, data


def left_behind(directory, kept, replaced):
    """Remove the data file a new one replaced, and any other no index names
    that is older than STRAY_SECONDS (a harvest killed before it saved its
    index leaves one, and so does a full harvest after the index was
    deleted; a concurrent harvest's own is younger)."""
    now = time.time()
    try:
        names = os.listdir(directory)
    except OSError:  # a folder one may write but not list: the index is saved all the same
        return
    for name in names:
        if name.startswith(DATA_PREFIX) and name != kept:
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                if name == replaced or now - os.lstat(path).st_mtime > STRAY_SECONDS:
                    os.unlink(path)
