# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""What a given value may be: one rule per kind (ids, names, whole numbers,
metric names, FILTER / SORT / COLUMNS, project paths, files the user names),
and which make variables each command reads, all checked before the command
starts. Every rule matches the whole value (\\Z, fullmatch, ASCII digits only)
and every rejection is one line naming the variable and what it may be.

Standard library only, Python 3.6+.
"""

import os
import re
import stat

from . import files, slurmkit

COUNT = re.compile(r"[0-9]{1,9}\Z")  # ASCII digits: "²".isdigit() is true, and int("²") fails
WORD_LIST = re.compile(r"[A-Za-z_]+(,[A-Za-z_]+)*\Z")
FILTER_ITEM = re.compile(r"([^=!<>]+)(=|!=|>=|<=|>|<)(.*)\Z", re.S)
# A project's path goes on sbatch's command line: in --output, % and \ are SLURM
# filename patterns (%j is the job id; a backslash anywhere turns the patterns off,
# so every job would write one file), and a tab or newline would split a job array's index.
PROJECT_PATH_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
PROJECT_PATH_FORBIDDEN = re.compile(r"[%\\\x00-\x1f\x7f]")
MAX_TEXT_FILE = 1 << 20  # a config or sweep file larger than 1 MiB is not one
MAX_NAME = 200


def is_count(text):
    """Whether text is a whole number written with ASCII digits (no sign, no space)."""
    return bool(COUNT.match(str(text)))


def text(name, value):
    """value, unless it holds a control character or is not UTF-8 (files.check_value)."""
    return files.check_value(name, value)


def whole_number(name, value, minimum=1):
    """value as an int: ASCII digits only, at least minimum."""
    if not is_count(value) or int(value) < minimum:
        raise files.ProjectError("{}={!r} is not a whole number (digits 0-9) of at least {}".format(
            name, value, minimum))
    return int(value)


def one_of(name, value, choices):
    """value (lower case) if it is one of choices."""
    if value.lower() not in choices:
        raise files.ProjectError("{}={!r} is not one of {}".format(name, value, ", ".join(choices)))
    return value.lower()


def experiment_id(name, value):
    return files.check_experiment_id(value, name)


def metric_name(name, value):
    """A metric as results name it: any text of a line, at most 200 characters."""
    text(name, value)
    if not value.strip() or len(value) > MAX_NAME:
        raise files.ProjectError("{}={!r} is not a metric name (1 to {} characters)".format(name, value, MAX_NAME))
    return value


# Every state a job can be shown in: SLURM's, and expflow's own (NEW: nothing submitted yet;
# SUBMITTED: not in accounting yet; SUBMITTING: sbatch's answer lost; UNKNOWN; LOST: a local job gone).
STATES = sorted(slurmkit.FINAL_STATES | {
    "PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
    "RESIZING", "SIGNALING", "SPECIAL_EXIT", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
    "NEW", "SUBMITTED", "SUBMITTING", "UNKNOWN", "LOST"})


def states(name, value):
    """STATE=COMPLETED or a list COMPLETED,RUNNING of state names, or all."""
    if not WORD_LIST.match(value.replace(" ", "")):
        raise files.ProjectError("{}={!r} is not a state or a list of states such as COMPLETED,RUNNING (or all)"
                                 .format(name, value))
    unknown = [s for s in value.replace(" ", "").upper().split(",") if s not in STATES and s != "ALL"]
    if unknown:
        raise files.ProjectError("{}={!r}: no state {} (states: {}; or all)".format(
            name, value, ", ".join(unknown), ", ".join(STATES)))
    return value


def sweep_reference(name, value):
    """SWEEP names a sweep file (configs/x.yaml) or a sweep (an id)."""
    if value.endswith((".yaml", ".yml")) or "/" in value:
        return text(name, value)
    return experiment_id(name, value)


def config_reference(name, value):
    """FROM names an experiment (an id) or a config file: a line of text."""
    return text(name, value)


# ----------------------------------------------------------------- FILTER, SORT, COLUMNS

def split_keeping_quotes(value, name="SET"):
    """Split on blanks outside quotes and brackets, and keep the quotes:
    name='res net' and x=[1, 2] stay one item each, and '50' stays quoted so that
    it is typed as a string, as in YAML. In double quotes a backslash escapes the
    next character, as in JSON."""
    items, current, quote, escaped, depth = [], [], None, False, 0
    for char in value:
        if escaped:
            escaped = False
        elif quote == '"' and char == "\\":
            escaped = True
        elif quote is None and char.isspace() and depth == 0:
            if current:
                items.append("".join(current))
            current = []
            continue
        elif char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif quote is None and char in "[]":
            depth = max(depth + (1 if char == "[" else -1), 0)
        current.append(char)
    if quote:
        raise files.ProjectError("{}: unclosed {} quote".format(name, quote))
    if current:
        items.append("".join(current))
    return items


def filter_items(value):
    """FILTER="state=COMPLETED optimizer.lr<0.1" -> [(column, op, value text)]."""
    items = []
    for item in split_keeping_quotes(text("FILTER", value), "FILTER"):
        match = FILTER_ITEM.match(item)
        if not match:
            raise files.ProjectError("FILTER: expected column=value (or != < > <= >=), got {!r}".format(item))
        items.append(match.groups())
    return items


def sort_keys(value):
    """SORT="-val_acc,id" -> [(column, descending)]."""
    keys = []
    for item in [k for k in text("SORT", value).split(",") if k]:
        column = item.strip().lstrip("-+")
        if not column:
            raise files.ProjectError("SORT: expected columns such as -val_acc,id, got {!r}".format(item))
        keys.append((column, item.strip().startswith("-")))
    return keys


def column_list(value):
    """COLUMNS=id,state,val_acc -> the columns; a whole number is the terminal's
    width, which shells keep in the same variable: no columns."""
    text("COLUMNS", value)
    return [] if is_count(value) else [c for c in value.split(",") if c]


def terminal_width(env):
    """COLUMNS when it is a width (ASCII digits), else None."""
    value = env.get("COLUMNS", "")
    return int(value) if is_count(value) else None


# ----------------------------------------------------------------- paths and files

def project_path(path, slurm=True):
    """path, if jobs can run there: no control character (it would break a job
    array's index), and for SLURM no % or backslash either."""
    bad = (PROJECT_PATH_FORBIDDEN if slurm else PROJECT_PATH_CONTROL).search(path)
    if bad:
        raise files.ProjectError("the project's path {!r} holds {!r}: sbatch reads % and \\ in --output as filename "
                                 "patterns, and a control character breaks job arrays; move the project to a path "
                                 "without them".format(path, bad.group()))
    return path


def backend(settings, env):
    """(backend, why): BACKEND (make variable, else settings.env) is auto, slurm or
    local; auto picks slurm when sbatch is on PATH."""
    choice = one_of("BACKEND", env.get("BACKEND") or settings.get("BACKEND") or "auto", ("auto", "slurm", "local"))
    if choice != "auto":
        return choice, "BACKEND={}".format(choice)
    import shutil  # here: only the commands that submit ask
    if shutil.which("sbatch"):
        return "slurm", "auto: sbatch found"
    return "local", "auto: no sbatch on PATH, running here"


def read_text_file(path, name):
    """The text of a file the user named (FROM, SWEEP, a config): a regular file
    of at most 1 MiB, UTF-8, without NUL bytes; else one line saying which."""
    where = files.display_path(path)
    try:
        info = os.stat(path)  # before open(): opening a FIFO would wait for a writer
        if not stat.S_ISREG(info.st_mode):
            raise files.ProjectError("{}: {} is not a regular file".format(name, where))
        with open(path, "rb") as handle:
            data = handle.read(MAX_TEXT_FILE + 1)  # /proc files say size 0: read, then count
    except OSError as exc:
        raise files.ProjectError("{}: cannot read {}: {}".format(name, where, exc.strerror or exc)) from None
    if len(data) > MAX_TEXT_FILE:
        raise files.ProjectError("{}: {} is larger than {} MiB: not a config".format(name, where, MAX_TEXT_FILE >> 20))
    if b"\0" in data:
        raise files.ProjectError("{}: {} is not a text file (it holds NUL bytes)".format(name, where))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise files.ProjectError("{}: {} is not UTF-8 text".format(name, where)) from None


# ----------------------------------------------------------------- make variables

def resource(name, value):
    try:
        return slurmkit.check_option(name.lower(), value)
    except ValueError as exc:
        raise files.ProjectError(str(exc)) from None


def resource_settings(mapping, where):
    """{KEY: value} of resource settings (a sweep file's resources): known keys,
    each value as its resource takes it."""
    checked = {}
    for key, value in mapping.items():
        name = str(key).upper()
        if name not in slurmkit.RESOURCE_KEYS:
            raise files.ProjectError("{}: {!r} is not a resource setting ({})".format(
                where, key, ", ".join(slurmkit.RESOURCE_KEYS)))
        if isinstance(value, (dict, list)):
            raise files.ProjectError("{}: {} must be one value, not {!r}".format(where, name, value))
        checked[name] = resource(name, str(value))
    return checked


# variable -> its rule (name, value) -> value, raising a ProjectError
RULES = {
    "EXP": experiment_id,
    "FROM": config_reference,
    "SET": text,
    "DESC": text,
    "SWEEP": sweep_reference,
    "N": whole_number,
    "MAX_PARALLEL": whole_number,
    "STAGE": lambda name, value: one_of(name, value, ("train", "eval")),
    "MODE": lambda name, value: one_of(name, value, ("max", "min")),
    "BACKEND": lambda name, value: one_of(name, value, ("auto", "slurm", "local")),
    "STATE": states,
    "METRIC": metric_name,
    "FILTER": lambda name, value: filter_items(value),
    "SORT": lambda name, value: sort_keys(value),
    "COLUMNS": lambda name, value: column_list(value),
    "PROFILE": lambda name, value: files.check_profile_name(value, name),
    "LIMIT": lambda name, value: whole_number(name, value, minimum=0),
    "ALL": lambda name, value: one_of(name, value, ("0", "1")),
    "DEST": text,
    "DAYS": lambda name, value: whole_number(name, value, minimum=0),
}
RULES.update((key, resource) for key in slurmkit.RESOURCE_KEYS)
SUBMITS = ("train", "eval", "resume", "sweep", "sweep-retry")
RESOURCES = slurmkit.RESOURCE_KEYS + ("BACKEND",)
HARVEST = ("FILTER", "SORT", "COLUMNS", "METRIC", "MODE", "STATE")
SCREEN = ("LIMIT", "ALL")  # how many rows make status and make results print
# command -> the make variables it reads (those it does not are not looked at)
READS = {
    "new": ("EXP", "FROM", "SET", "DESC") + slurmkit.RESOURCE_KEYS,
    "train": ("EXP", "FROM", "SET", "DESC") + RESOURCES,
    "eval": ("EXP", "SWEEP", "MAX_PARALLEL") + RESOURCES,
    "resume": ("EXP",) + RESOURCES,
    "sweep": ("SWEEP", "MAX_PARALLEL") + RESOURCES,
    "sweep-retry": ("SWEEP", "MAX_PARALLEL") + RESOURCES,
    "cancel": ("EXP", "SWEEP"),
    "archive": ("EXP",),
    "list": ("STATE",),
    "logs": ("EXP", "STAGE", "N"),
    "tail": ("EXP", "STAGE", "N"),
    "status": ("SWEEP", "EXP") + SCREEN,
    "results": HARVEST + SCREEN,
    "best": HARVEST + ("N",),
    "report": HARVEST,
    "plot": ("FILTER", "SORT", "METRIC"),
    "resources": ("EXP",) + RESOURCES,
    "check": ("EXP",) + RESOURCES,
    "compare": (),
    "du": ("EXP",),
    "prune-logs": ("EXP", "DEST", "DAYS"),
}
# ... and every command reads the settings of one profile, which PROFILE= chooses (profiles.py)
READS = {command: names + ("PROFILE",) for command, names in READS.items()}


def check_variables(command, env):
    """Check every make variable command reads that is given (not empty), and for
    a command that submits, the project's own path: before anything is created
    or submitted."""
    for name in READS.get(command, ()):
        value = env.get(name, "")
        if value:
            RULES[name](name, value)
    if command in SUBMITS:
        project_path(files.ROOT, backend(files.read_settings(files.ROOT), env)[0] == "slurm")
