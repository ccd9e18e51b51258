# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""The rows make results and make status rendered last time,
.expflow/results.rows and .expflow/status.rows: an experiment whose index
entry kept its stamps (its files did not change) and whose rows follow from
its files alone is not rendered again. A cache like the index: missing,
damaged, or rendered for other columns, every row is rendered anew, the same.
One sealed line per experiment (index.sealed), in id order:

    crc  id  stamps  row

row: what the command renders of the experiment (harvest.Rendered, StatusRows)
as a JSON list.

Standard library only, Python 3.6+.
"""

import collections
import contextlib
import json
import os

from . import files, index, slurmkit, state

ROWS_FILE = os.path.join(".expflow", "results.rows")
STATUS_FILE = os.path.join(".expflow", "status.rows")
FORMAT = "expflow-rows 1"

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


class RowCache:
    """take(entry): the row cached for an index entry with the same stamps, or
    None; keep(entry, row): cache it for the next harvest. Used as a context:
    the new cache is written beside the old one as rows come, and put in its
    place (a rename) when the block ends without error. A cache that cannot be
    written (a full disk, a lab-mate's project) is no cache: never an error,
    which is why this is not files.atomic_file (it makes every failure one)."""

    def __init__(self, path, key, kind):
        self.path, self.kind = path, kind
        self.old = index.Lookup(index.old_entries(self.path, key, Cached))
        self.out = self.tmp = None
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.out, self.tmp = files.temp_beside(self.path)
        except OSError:
            return
        self.write((key + "\n").encode("utf-8"))

    def __enter__(self):
        return self

    def __exit__(self, error, _value, _traceback):
        if self.out is not None:
            with contextlib.suppress(OSError):
                self.out.close()
                if error is None:
                    os.replace(self.tmp, self.path)
                    return
        if self.tmp:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)

    def write(self, data):
        if self.out is None:
            return
        try:
            self.out.write(data)
        except OSError:
            with contextlib.suppress(OSError):
                self.out.close()
            self.out = None

    def take(self, entry):
        found = self.old.take(entry.id) if entry.stamps != index.UNSETTLED else None
        if found is None or found.stamps != entry.stamps:
            return None
        self.write(found.line)
        return self.kind(*json.loads(found.row))

    def keep(self, entry, row):
        if entry.stamps != index.UNSETTLED:
            self.write(index.sealed("\t".join([entry.id, entry.stamps, index.encode(row)])))
