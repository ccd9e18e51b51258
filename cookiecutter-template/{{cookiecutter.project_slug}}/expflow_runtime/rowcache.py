# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""The rows make results and make status rendered last time,
.expflow/results.rows and .expflow/status.rows: an experiment whose index
entry kept its stamps (its files did not change) and whose rows follow from
its files alone is not rendered again. A cache like the index: missing,
damaged, or rendered for other columns, every row is rendered anew, the same.

status.rows (RowCache): one sealed line per experiment (index.sealed), in id
order, "crc id stamps row", row: what make status renders of it
(StatusRows) as a JSON list.

results.rows (ResultsCache): one sealed line per row of the results files,
in their order, with the row's length in each of them; an unchanged row is
copied from the last results files rather than written again.

Standard library only, Python 3.6+.
"""

import collections
import contextlib
import errno
import json
import os
import zlib

from . import files, index, slurmkit, state

ROWS_FILE = os.path.join(".expflow", "results.rows")
STATUS_FILE = os.path.join(".expflow", "status.rows")
FORMAT = "expflow-rows 2"

Cached = collections.namedtuple("Cached", "id stamps row line")


def cache_key(settings, *view):
    """What every row depends on besides its experiment's files: the index's
    settings and the view's (for results, its columns and metric)."""
    return json.dumps([FORMAT, index.index_key(settings)] + list(view))


def from_files_alone(experiment):
    """Whether an experiment's row follows from its files alone: each newest
    job ended and recorded it, none is asked of a scheduler, waits on a lost
    sbatch answer or runs on another cluster, and nothing is to be warned of
    (a warning is said at every harvest)."""
    if experiment["problems"]:
        return False
    for _stage, job, record in state.latest_jobs(experiment):
        if job.get("unresolved") or job.get("cluster") or state.needs_scheduler(job, record) \
                or (record or {}).get("state") not in slurmkit.FINAL_STATES:
            return False
    return True


class CacheFile:
    """A cache file being written: beside its path, its key first, put in
    place by a rename (done()) or dropped (dropped()). A cache that cannot be
    written (a full disk, a lab-mate's project) is no cache: never an error,
    which is why this is not files.atomic_file (it makes every failure one).
    crc: of what write() wrote, when summed (else None)."""

    def __init__(self, path, key, summed=False):
        self.path, self.out, self.tmp, self.crc = path, None, None, 0 if summed else None
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.out, self.tmp = files.temp_beside(path)
            self.out.write((key + "\n").encode("utf-8"))
        except OSError:
            self.dropped()

    def write(self, data):
        if self.out is None:
            return
        if self.crc is not None:
            self.crc = zlib.crc32(data, self.crc)
        try:
            self.out.write(data)
        except OSError:
            self.dropped()

    def tell(self):
        return self.out.tell() if self.out is not None else 0

    def rewrite(self, at, data):
        """data (a line of a fixed width) written at offset at; then on at the end."""
        if self.out is None:
            return
        try:
            self.out.seek(at)
            self.out.write(data)
            self.out.seek(0, os.SEEK_END)
        except OSError:
            self.dropped()

    def done(self):
        if self.out is None:
            return
        try:
            self.out.close()
            os.replace(self.tmp, self.path)
            self.out = self.tmp = None
        except OSError:
            self.dropped()

    def dropped(self):
        if self.out is not None:
            with contextlib.suppress(OSError):
                self.out.close()
        self.out = None
        if self.tmp:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
        self.tmp = None


class RowCache:
    """take(entry): the row cached for an index entry with the same stamps, or
    None; keep(entry, row): cache it for the next harvest. Used as a context:
    the new cache is written beside the old one as rows come, and put in its
    place (a rename) when the block ends without error (CacheFile)."""

    def __init__(self, path, key, kind):
        self.kind = kind
        self.old = index.Lookup(index.old_entries(path, key, Cached))
        self.file = CacheFile(path, key)

    def __enter__(self):
        return self

    def __exit__(self, error, _value, _traceback):
        if error is None:
            self.file.done()
        else:
            self.file.dropped()

    def take(self, entry):
        found = self.old.take(entry.id) if entry.stamps != index.UNSETTLED else None
        if found is None or found.stamps != entry.stamps:
            return None
        self.file.write((found.line + "\n").encode("ascii"))
        return self.kind(*json.loads(found.row))

    def keep(self, entry, row):
        if entry.stamps != index.UNSETTLED:
            self.file.write(index.sealed("\t".join([entry.id, entry.stamps, index.encode(row)])))


# ----------------------------------------------------------------- make results

Copied = collections.namedtuple("Copied", "id stamps state metric swept at lengths source")
Copied.__doc__ = """A row of make results that is in the last results files as it
will be in the new ones: at, its offset in each of results.csv, .md and .json
and of its line in the last results.rows, lengths, its length in each, where
source (a ResultsCache) reads it."""

RESULT_KINDS = ("csv", "md", "json")
JSON_SEPARATOR = b",\n"  # between two rows of results.json, after "[\n"


def result_paths(root):
    return [os.path.join(root, "results", "results." + kind) for kind in RESULT_KINDS]


def file_stamps(infos):
    return "\t".join("{:020d}:{:020d}:{:020d}".format(i.st_ino, i.st_mtime_ns, i.st_size) for i in infos)


def plain(text):
    """A cell as a field of a sealed line: as it is when it is ASCII without a
    tab, else as JSON (which starts with a quote no plain cell of a metric or
    state starts with; one that does is JSON too)."""
    try:
        if "\t" not in text and not text.startswith('"') and text.encode("ascii"):
            return text
    except UnicodeEncodeError:
        pass
    return index.encode(text) if text else ""


def unplain(field):
    return json.loads(field) if field.startswith('"') else field


class ResultsCache:
    """.expflow/results.rows: one line per row of the results files, in their
    order, "crc id stamps state metric swept csv md json" (the last three:
    the row's length in each file), and a head naming the results files it
    describes by their stamps. take(entry) gives a Copied row when the
    entry's stamps are those its row was rendered with and the results files
    are the ones described, so that make results copies it, bytes and all;
    add(row, lengths) writes each row's line as the new results files get
    it. Like RowCache: a cache that cannot be read or written is no cache."""

    def __init__(self, path, key, header_bytes):
        self.path, self.key = path, key
        self.sources, self.body, self.sendfile = [], b"", hasattr(os, "sendfile")
        self.old = index.Lookup(iter(()))
        try:
            self.old = index.Lookup(self.old_rows(header_bytes))
        except OSError:
            self.close_sources()
        self.file = CacheFile(path, key, summed=True)
        self.head_at = self.file.tell()
        self.file.rewrite(self.head_at, self.head("\t".join([":".join(["0" * 20] * 3)] * 3), 0))

    @staticmethod
    def head(stamps, crc):
        """The cache's second line: the results files' stamps and the crc of
        the lines after it, of a fixed width: written again at the end."""
        return index.sealed("results\t{}\t{:08x}".format(stamps, crc))

    def old_rows(self, header_bytes):
        """Copied rows of the last harvest's cache, each with its spans in the
        results files it describes (opened here, so that a harvest renaming
        new ones over them meanwhile changes nothing); they stop at the first
        damaged line, after which no offset is known. header_bytes: what the
        results files hold before their rows (harvest.result_heads)."""
        with open(self.path, "rb") as handle:
            if handle.readline() != (self.key + "\n").encode("utf-8"):
                return
            head = index.unsealed(handle.readline(), 5)
            for path in result_paths(files.ROOT):
                self.sources.append(os.open(path, os.O_RDONLY))
            if not head or head[1:4] != file_stamps([os.fstat(fd) for fd in self.sources]).split("\t"):
                return
            body = self.body = handle.read()
            csv_at, md_at, json_at = [len(head) for head in header_bytes]
            json_at -= len(JSON_SEPARATOR) - 1  # "\n" before the first row of results.json, ",\n" before the others
            line_at, last, swept = 0, "", index.Memo()
            try:
                for fields, _line, size in index.SealedLines(body, 8, head[4]).parsed():
                    if not fields or len(fields) != 8 or fields[0] <= last:
                        return
                    last, lengths = fields[0], (int(fields[5]), int(fields[6]), int(fields[7]), size)
                    json_at += len(JSON_SEPARATOR)
                    yield Copied(last, fields[1], unplain(fields[2]), unplain(fields[3]), swept[fields[4]],
                                 (csv_at, md_at, json_at, line_at), lengths, self)
                    csv_at, md_at, json_at, line_at = \
                        csv_at + lengths[0], md_at + lengths[1], json_at + lengths[2], line_at + size
            except (OSError, ValueError):
                return

    def take(self, entry):
        found = self.old.take(entry.id) if entry.stamps != index.UNSETTLED else None
        return found if found is not None and found.stamps == entry.stamps else None

    def add(self, row, lengths):
        """The line of a Rendered row just written to the results files,
        lengths its bytes in each (its stamps UNSETTLED when it must be
        rendered again next time); a Copied row's is copied with it (copy())."""
        if row.id is None:  # a view of the rows (FILTER, SORT, COLUMNS): no cache of it
            self.file.dropped()
        else:
            swept = index.encode(row.swept) if row.swept else "[]"
            fields = [row.id, row.stamps, plain(row.state or ""), plain(row.metric), swept]
            self.file.write(index.sealed("\t".join(fields + [str(n) for n in lengths])))

    def read(self, row, kind=0):
        """The bytes of a Copied row in one of the old results files (kind: its
        place in RESULT_KINDS)."""
        return os.pread(self.sources[kind], row.lengths[kind], row.at[kind])

    def copy(self, kind, start, end, out):
        """The old results file's bytes [start, end) written to out (kind: its
        place in RESULT_KINDS), by the kernel where it can (sendfile between
        two files: Linux), else a MiB at a time; kind 3: the last
        results.rows' lines, after its head, written to the new one."""
        if kind == len(RESULT_KINDS):
            self.file.write(self.body[start:end])
            return
        fd = self.sources[kind]
        if self.sendfile:
            out.flush()  # what out holds goes first; its own position is never asked for
            try:
                while start < end:
                    sent = os.sendfile(out.fileno(), fd, start, end - start)
                    if not sent:
                        raise OSError(5, "results file cut short while copied")
                    start += sent
                return
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK):
                    raise
                self.sendfile = False  # not between two files here: copied by hand from where it stopped
        while start < end:
            chunk = os.pread(fd, min(end - start, 1 << 20), start)
            if not chunk:
                raise OSError(5, "results file cut short while copied")
            out.write(chunk)
            start += len(chunk)

    def close_sources(self):
        for fd in self.sources:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.sources = []

    def finish(self, written):
        """The results files written (their handles, about to be renamed into
        place): the cache names them and takes the place of the old one."""
        try:
            for handle in written:
                handle.flush()
            stamps = file_stamps([os.fstat(handle.fileno()) for handle in written])
        except OSError:
            self.file.dropped()
            return
        self.file.rewrite(self.head_at, self.head(stamps, self.file.crc))
        self.file.done()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.file.dropped()
        self.close_sources()
