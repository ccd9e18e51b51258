# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""The project's files: settings.env, experiment ids and directories, records.

Standard library only, Python 3.6+; imports no other module of the runtime.
Layout of one experiment (docs: README.md of the project):

    experiments/<id>/config.yaml     snapshot of the config it was created from
    experiments/<id>/config.json     the same, as JSON, for code without PyYAML
    experiments/<id>/metadata.json   what was asked: created, jobs submitted, resources
    experiments/<id>/runs/<stage>-<job>.json   what happened, written by the job itself
    experiments/<id>/logs/<stage>-<job>.out    the job's stdout and stderr
"""

import contextlib
import json
import os
import re
import sys
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project
STAGES = ("train", "eval")
DEFAULT_CONFIG = os.path.join("configs", "default.yaml")


class ProjectError(Exception):
    """A problem the user can fix; run.py prints it as one line and exits 1."""


def warn(message):
    print("WARNING: " + message, file=sys.stderr)


def flag(env, name):
    """A make variable used as a switch: RESUBMIT=1 is on, empty or 0 is off."""
    return env.get(name, "") not in ("", "0")


# ----------------------------------------------------------------- settings

SETTINGS_FILE = "settings.env"

# The one grammar of settings.env, which bash and Python read alike: a line is blank,
# a comment, or KEY=VALUE where VALUE is a single-quoted literal ('it'\''s': the
# '\'' escape) or a bare word of letters, digits and _@%+=:,./- (GPUS=2), either
# followed by blanks and a comment. Nothing in it is ever expanded or run: bash
# gets the values from `run.py job-settings` (job-lib.sh), never by sourcing it.
SETTING_LINE = re.compile(
    r"[ \t]*(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>'[^']*'(?:\\''[^']*')*|[A-Za-z0-9_@%+=:,./-]*)"
    r"(?:[ \t]+#.*)?[ \t]*\Z")
COMMENT_LINE = re.compile(r"[ \t]*(?:#.*)?\Z")
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
SURROGATE = re.compile("[\ud800-\udfff]")
# Names the shell gives a meaning to (code it runs, how it splits words, where it
# finds commands, read-only ones): a setting may not take them, nor BASH_*.
RESERVED_SETTINGS = frozenset(("BASHOPTS", "CDPATH", "ENV", "EUID", "GLOBIGNORE", "HOME", "IFS", "LD_AUDIT",
                               "LD_LIBRARY_PATH", "LD_PRELOAD", "PATH", "PPID", "PROMPT_COMMAND", "PS1", "PS2",
                               "PS3", "PS4", "SHELLOPTS", "UID"))


def display_path(path):
    """A path as messages name it: relative to the project when inside it."""
    relative = os.path.relpath(os.path.abspath(path), ROOT)
    return path if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def parse_setting(line):
    """One line of settings.env -> (key, value), None for a blank or comment line;
    ValueError saying what is wrong with any other line."""
    bad = CONTROL_CHARACTER.search(line)
    if bad:
        what = "a carriage return (Windows line ending?)" if bad.group() == "\r" else "a control character"
        raise ValueError("{} in the line".format(what))
    if COMMENT_LINE.match(line):
        return None
    match = SETTING_LINE.match(line)
    if not match:
        raise ValueError("expected KEY='value' (single quotes; write ' as '\\''), got {!r}".format(line))
    key, value = match.group("key"), match.group("value")
    if key in RESERVED_SETTINGS or key.startswith("BASH_"):
        raise ValueError("{} is the shell's own variable, not a setting".format(key))
    if value.startswith("'"):
        value = value[1:-1].replace("'\\''", "'")
    return key, value


def read_settings(root, missing_ok=False, name=SETTINGS_FILE):
    """DIR/settings.env (or DIR/name: a profile) -> {KEY: value}, in the grammar
    of SETTING_LINE; anything else is a ProjectError naming the file and the
    line. missing_ok: an experiment without its own settings has {}."""
    path = os.path.join(root, name)
    if missing_ok and not os.path.lexists(path):
        return {}
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except OSError as exc:
        raise ProjectError("cannot read {}: {}".format(display_path(path), exc.strerror)) from None
    except UnicodeDecodeError:
        raise ProjectError("{} is not UTF-8 text".format(display_path(path))) from None
    settings = {}
    for number, line in enumerate(text.split("\n"), 1):
        try:
            setting = parse_setting(line)
        except ValueError as exc:
            raise ProjectError("{} line {}: {}".format(display_path(path), number, exc)) from None
        if setting:
            settings[setting[0]] = setting[1]
    return settings


def check_value(name, value):
    """value, unless it holds a newline, NUL or other control character (a tab is
    fine): such a value cannot be one line of settings.env or of a config; nor
    can bytes that are not UTF-8 (Python hands them over as lone surrogates)."""
    if CONTROL_CHARACTER.search(str(value)):
        raise ProjectError("{}={!r}: a value cannot hold a newline, NUL or other control character".format(
            name, value))
    if SURROGATE.search(str(value)):
        raise ProjectError("{}={!r}: a value must be UTF-8 text".format(name, value))
    return value


def quote_setting(value):
    """value as settings.env writes it: 'single-quoted', with ' as '\\''."""
    return "'" + str(value).replace("'", "'\\''") + "'"


def write_settings(path, values):
    """{KEY: value} -> KEY='value' lines in the grammar read_settings reads."""
    lines = ["# this experiment's own settings: they override the project's settings.env"]
    lines += ["{}={}".format(key, quote_setting(check_value(key, value))) for key, value in sorted(values.items())]
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_setting_records(settings):
    """settings (profiles.job_settings: run.py job-settings) as NUL-terminated
    KEY=VALUE records and then the record END, which job-lib.sh assigns with
    printf -v: bash never runs the file. A file read_settings refuses prints no
    record: the job stops before anything runs."""
    return write_records(["{}={}".format(key, value) for key, value in sorted(settings.items())])


def write_records(records):
    """Records for bash to read (job-lib.sh): each NUL-terminated, then END, so
    that a reader knows the list is whole. A record holding a NUL is refused."""
    if any("\0" in record for record in records):
        raise ProjectError("a value holds a NUL character, which no command-line argument can")
    data = "".join(record + "\0" for record in records + ["END"])
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # a test's captured stdout
        sys.stdout.write(data)
    else:
        out.write(data.encode("utf-8"))
    sys.stdout.flush()
    return 0


def setting_overrides(settings, environ, keys):
    """settings with each key in keys replaced by its environment value, where
    make puts command-line variables; an empty one (GPU_TYPE=) clears it."""
    merged = dict(settings)
    for key in keys:
        if key in environ:
            merged[key] = environ[key]
    return merged


def setting_sources(own_path, own, environ, keys):
    """{key: where its value comes from} for the layers settings < own (the
    settings.env in the directory own_path) < environ: "the command line", that
    file, or the project's settings.env."""
    where = display_path(os.path.join(own_path, SETTINGS_FILE)) if own_path else ""
    return {key: "the command line" if key in environ else where if key in own else SETTINGS_FILE
            for key in keys}


# ----------------------------------------------------------------- experiments

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # \Z: "$" would take a final newline


def check_experiment_id(exp_id, name=""):
    """Return exp_id when it is safe as a directory and job name, else raise;
    name: the variable it came from (EXP), said in the error."""
    if not exp_id:
        raise ProjectError("no experiment given: add EXP=<id>, for example EXP=001")
    if not ID_PATTERN.match(exp_id):
        raise ProjectError(
            "invalid experiment id {!r}{}: use letters, digits, '.', '_' and '-' (at most 100), "
            "starting with a letter or digit".format(exp_id, " (" + name + ")" if name else "")
        )
    return exp_id


def check_profile_name(name, what="PROFILE"):
    """name, when it can name a profile (profiles/<name>.env), else raise; what:
    where it came from (PROFILE, ClusterName)."""
    if not ID_PATTERN.match(name):
        raise ProjectError("{}={!r}: a profile is named by letters, digits, '.', '_' and '-' (at most 100), "
                           "starting with a letter or digit".format(what, name))
    return name


def experiments_dir(root):
    return os.path.join(root, "experiments")


def experiment_dir(root, exp_id):
    """experiments/<id>. A symbolic link there is refused, never followed: it may
    lead into another project, whose jobs make cancel would then cancel."""
    path = os.path.join(experiments_dir(root), check_experiment_id(exp_id))
    if os.path.islink(path):
        raise ProjectError("experiments/{} is a symbolic link: refused (expflow never follows links "
                           "under experiments/)".format(exp_id))
    return path


def list_experiment_ids(root):
    """Ids of the experiments present, sorted; work-in-progress dirs are skipped,
    and symbolic links too, with a warning (see experiment_dir)."""
    ids = []
    try:
        with os.scandir(experiments_dir(root)) as entries:
            for entry in entries:
                if not ID_PATTERN.match(entry.name):
                    continue
                if entry.is_symlink():
                    warn("experiments/{} is a symbolic link: skipped (expflow never follows links "
                         "under experiments/)".format(entry.name))
                elif entry.is_dir(follow_symlinks=False):
                    ids.append(entry.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ProjectError("cannot read {}: {}".format(display_path(experiments_dir(root)), exc.strerror)) from None
    return sorted(ids)


def pid_alive(pid):
    """Whether a process exists (a local job still running)."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def now_iso():
    return datetime.now().astimezone().replace(microsecond=0).isoformat()


def hostname():
    """This machine's name, as socket.gethostname() gives it (the kernel's
    node name), without loading socket, which every command would pay for."""
    return os.uname().nodename


def cannot_write(path, exc):
    """A ProjectError naming the file: cannot write results/results.csv: No space left on device."""
    return ProjectError("cannot write {}: {}".format(display_path(path), exc.strerror or exc))


def temp_beside(path, mode="wb", temp_dir=None, prefix=".tmp-"):
    """(open file, its name): a new file of a unique name beside path (two
    writers never share one), to be renamed over it, with the mode a plain
    open() gives (0666 less the umask, so that a lab-mate in the group reads
    the records of a shared project; mkstemp would make it 0600); raises
    OSError. Text is UTF-8, written as given (no newline rewrite). temp_dir:
    another directory of the same file system to make it in
    (write_experiment_json)."""
    directory = temp_dir or os.path.dirname(path) or "."
    while True:
        tmp = os.path.join(directory, prefix + os.urandom(6).hex())
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue  # 48 random bits taken: another name
    try:
        return open(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})), tmp
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_file(path, mode="w", place=os.replace, temp_dir=None):
    """A file written atomically, in pieces: the block writes to a temp file of a
    unique name beside path (two writers never share one), with the mode a plain
    open() gives; when the block ends without error, place(temp, path) puts it
    there (a rename: a reader sees the old file or the new one, never half of
    one). On any error (disk full, permission) the temp file is removed and a
    ProjectError names path. The file is temp_beside's."""
    try:
        handle, tmp = temp_beside(path, mode, temp_dir)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        with handle:
            yield handle
        place(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from None
        raise


def write_bytes_atomic(path, data, exclusive=False, temp_dir=None):
    """data written as atomic_file writes. exclusive: create path only if it does
    not exist yet (a hard link, atomic on NFS and Lustre too); False when it did."""
    created = []

    def link(tmp, target):
        try:
            os.link(tmp, target)
            created.append(target)
        except FileExistsError:
            pass
        os.unlink(tmp)

    with atomic_file(path, "wb", link if exclusive else os.replace, temp_dir) as handle:
        handle.write(data)
    return bool(created) or not exclusive


def write_text_atomic(path, text):
    """text as UTF-8, written as write_bytes_atomic writes."""
    write_bytes_atomic(path, text.encode("utf-8"))


def json_bytes(data):
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def write_json_atomic(path, data):
    write_bytes_atomic(path, json_bytes(data))


def write_experiment_json(exp_path, path, data, exclusive=False):
    """write_json_atomic of a file in one of an experiment's folders (runs/,
    jobs/; exclusive as write_bytes_atomic), its temp file made in the
    experiment's own directory: the rename out of it changes that directory's
    mtime, which is how the harvest index sees every file the runtime writes
    in an experiment with one stat (index.py)."""
    return write_bytes_atomic(path, json_bytes(data), exclusive, temp_dir=exp_path)


MAX_DEPTH = 100  # JSON nested deeper is refused: code that walks it would recurse too deep


def too_deep(data, limit=MAX_DEPTH):
    """Whether JSON data nests more than limit levels (walked level by level, not recursively)."""
    level = [data]
    for _ in range(limit):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return True


def read_bytes(path):
    """A file's bytes, read with os.open and os.read: a harvest reads tens of
    thousands of small files, and open()'s buffered file object costs more than
    the reading (3 microseconds a file, a tenth of a cold make results)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_json(path):
    """JSON file -> (data, problem): data is None and problem says why when the
    file is missing, unreadable (permissions), not UTF-8, not JSON or nested too
    deep, so one bad file never stops a run. NaN and Infinity load as floats."""
    try:
        text = read_bytes(path).decode("utf-8")
        data = json.loads(text)
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, "{}: {}".format(os.path.basename(path), exc.strerror or exc)
    except UnicodeDecodeError:
        return None, "{}: not UTF-8 text".format(os.path.basename(path))
    except ValueError as exc:
        return None, "{}: {}".format(os.path.basename(path), exc)
    except RecursionError:
        return None, "{}: nested too deep".format(os.path.basename(path))
    # a text with no more brackets than MAX_DEPTH cannot nest deeper: the walk is for the rest
    if text.count("[") + text.count("{") > MAX_DEPTH and too_deep(data):
        return None, "{}: nested more than {} levels deep".format(os.path.basename(path), MAX_DEPTH)
    return data, ""


def run_records(exp_path, problems=None):
    """{(stage, job_id): record} from the experiment's runs/ directory; a record
    that cannot be read is skipped, and said in problems when given."""
    records = {}
    runs = os.path.join(exp_path, "runs")
    try:
        names = sorted(os.listdir(runs))
    except (FileNotFoundError, NotADirectoryError):
        names = []  # no job has started yet
    except OSError as exc:
        names = []
        if problems is not None:
            problems.append("runs/: {}".format(exc.strerror or exc))
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            record, problem = read_json(runs + os.sep + name)  # not os.path.join: 10,000s of them
            if problem and problems is not None:
                problems.append("runs/" + problem)
            if isinstance(record, dict) and "stage" in record and "job_id" in record:
                key = (record["stage"], str(record["job_id"]))
                if int(record.get("restart") or 0) >= int(records.get(key, {}).get("restart") or 0):
                    records[key] = record  # a requeued job's latest run
    return records


def read_metadata(exp_path):
    """An experiment's metadata.json; unreadable is an error. Its "jobs" are those
    of projects before 0.2.0 (ledger.metadata adds the journal's)."""
    metadata, problem = read_json(os.path.join(exp_path, "metadata.json"))
    if not isinstance(metadata, dict):
        raise ProjectError("cannot read {}/metadata.json: {}".format(exp_path, problem or "not a JSON object"))
    metadata.setdefault("jobs", [])
    return metadata


def run_record_path(exp_path, stage, job_id, restart=0):
    """A job's own record; a job SLURM started again keeps one per run."""
    suffix = ".r{}".format(restart) if int(restart or 0) else ""
    return os.path.join(exp_path, "runs", "{}-{}{}.json".format(stage, job_id, suffix))


MOVED_NOTE = "MOVED.txt"  # in an experiment's logs/: where make prune-logs put them


def log_name(stage, job_id):
    """Where a job's output goes, relative to its experiment."""
    return os.path.join("logs", "{}-{}.out".format(stage, job_id))


def job_id_from_env(env):
    """The id a job records itself under: SLURM's, as sacct names it (a sweep's
    task 44_3, not its own number), else the local backend's."""
    if env.get("SLURM_ARRAY_JOB_ID"):
        return "{}_{}".format(env["SLURM_ARRAY_JOB_ID"], env.get("SLURM_ARRAY_TASK_ID", "0"))
    return env.get("SLURM_JOB_ID") or env.get("EXPFLOW_LOCAL_JOB_ID") or "local-{}".format(os.getppid())


def latest_job(metadata, stage):
    """The last job submitted for stage, or None."""
    jobs = [job for job in metadata.get("jobs", []) if job.get("stage") == stage]
    return jobs[-1] if jobs else None


