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

import json
import os
import re
import shlex
import sys
import tempfile
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

def read_settings(root, missing_ok=False):
    """DIR/settings.env -> {KEY: value}. The file is data: KEY='value' lines only.
    missing_ok: an experiment without its own settings has {}."""
    path = os.path.join(root, SETTINGS_FILE)
    if missing_ok and not os.path.exists(path):
        return {}
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ProjectError("cannot read {}: {}".format(path, exc.strerror)) from None
    settings = {}
    for number, line in enumerate(lines, 1):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ProjectError("{} line {}: {}".format(SETTINGS_FILE, number, exc)) from None
        if not tokens:
            continue
        key, sep, value = tokens[0].partition("=")
        if len(tokens) != 1 or not sep or not re.match(r"^[A-Z][A-Z0-9_]*$", key):
            raise ProjectError("{} line {}: expected KEY='value', got {!r}".format(SETTINGS_FILE, number, line))
        settings[key] = value
    return settings


def write_settings(path, values):
    """{KEY: value} -> KEY='value' lines that bash sources and read_settings reads."""
    lines = ["# this experiment's own settings: they override the project's settings.env"]
    lines += ["{}={}".format(key, shlex.quote(str(value))) for key, value in sorted(values.items())]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def setting_overrides(settings, environ, keys):
    """settings with each key in keys replaced by its environment value, where
    make puts command-line variables; an empty one (GPU_TYPE=) clears it."""
    merged = dict(settings)
    for key in keys:
        if key in environ:
            merged[key] = environ[key]
    return merged


# ----------------------------------------------------------------- experiments

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_experiment_id(exp_id):
    """Return exp_id when it is safe as a directory and job name, else raise."""
    if not exp_id:
        raise ProjectError("no experiment given: add EXP=<id>, for example EXP=001")
    if not ID_PATTERN.match(exp_id):
        raise ProjectError(
            "invalid experiment id {!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit".format(exp_id)
        )
    return exp_id


def experiments_dir(root):
    return os.path.join(root, "experiments")


def experiment_dir(root, exp_id):
    return os.path.join(experiments_dir(root), check_experiment_id(exp_id))


def list_experiment_ids(root):
    """Ids of the experiments present, sorted; work-in-progress dirs are skipped."""
    base = experiments_dir(root)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if ID_PATTERN.match(n) and os.path.isdir(os.path.join(base, n)))


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


def write_text_atomic(path, text):
    """Write text to a temp file in the same directory, then rename over path:
    a reader sees the old file or the new one, never half of one; two writers
    never share a temp file."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, data):
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path):
    """JSON file -> (data, problem): data is None and problem says why when the
    file is missing, unreadable or not JSON, so one bad file never stops a run."""
    try:
        with open(path) as handle:
            return json.load(handle), ""
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError) as exc:
        return None, "{}: {}".format(os.path.basename(path), exc)


def run_records(exp_path):
    """{(stage, job_id): record} from the experiment's runs/ directory."""
    records = {}
    runs = os.path.join(exp_path, "runs")
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        if name.endswith(".json") and not name.startswith("."):
            record, _problem = read_json(os.path.join(runs, name))
            if isinstance(record, dict) and "stage" in record and "job_id" in record:
                records[(record["stage"], str(record["job_id"]))] = record
    return records


def read_metadata(exp_path):
    """An experiment's metadata.json, with its list of jobs; unreadable is an error."""
    metadata, problem = read_json(os.path.join(exp_path, "metadata.json"))
    if not isinstance(metadata, dict):
        raise ProjectError("cannot read {}/metadata.json: {}".format(exp_path, problem or "not a JSON object"))
    metadata.setdefault("jobs", [])
    return metadata


def record_job(exp_path, job):
    """Append a submitted job to the experiment's metadata.json."""
    metadata = read_metadata(exp_path)
    metadata["jobs"].append(job)
    write_json_atomic(os.path.join(exp_path, "metadata.json"), metadata)


def run_record_path(exp_path, stage, job_id):
    return os.path.join(exp_path, "runs", "{}-{}.json".format(stage, job_id))


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


