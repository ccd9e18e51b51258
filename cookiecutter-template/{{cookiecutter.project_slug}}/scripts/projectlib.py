"""The project's files: settings.env, experiment ids and directories, metadata.

Standard library only, Python 3.6+; shared by scripts/experiment.py and
scripts/harvest.py. Layout of one experiment (docs: README.md of the project):

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


class ProjectError(Exception):
    """A problem the user can fix; main() prints it as one line and exits 1."""


def run_command_table(commands, argv=None, env=None):
    """The entry point of every script: argv names one of commands, which gets the
    environment (where make puts its variables). A ProjectError becomes one line
    on stderr and exit status 1."""
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: {} {}".format(os.path.basename(sys.argv[0]), " | ".join(commands)), file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](env)
    except ProjectError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1


# ----------------------------------------------------------------- settings

SETTINGS_FILE = "settings.env"

# settings a command line (or an experiment's own settings.env) may override:
# make train EXP=001 GPUS=2 TIME=04:00:00
RESOURCE_KEYS = ("PARTITION", "ACCOUNT", "GPU_TYPE", "GPUS", "NODES", "CPUS", "MEM", "TIME",
                 "QOS", "CONSTRAINT", "MAIL_TYPE")


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


def write_json_atomic(path, data):
    """Write JSON to a temp file in the same directory, then rename over path:
    a reader sees the old file or the new one, never half of one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def latest_job(metadata, stage):
    """The last job submitted for stage, or None."""
    jobs = [job for job in metadata.get("jobs", []) if job.get("stage") == stage]
    return jobs[-1] if jobs else None


# ----------------------------------------------------------------- config files (YAML subset)

class YamlSubsetError(ProjectError):
    """A config uses YAML beyond what the stdlib reader handles (PyYAML not installed)."""


def load_yaml(path):
    """Read a YAML config: with PyYAML when importable, else with read_yaml_subset."""
    with open(path) as handle:
        text = handle.read()
    try:
        import yaml
    except ImportError:
        return read_yaml_subset(text, path)
    data = yaml.safe_load(text)
    return {} if data is None else data


_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$")


def parse_scalar(text):
    """A YAML scalar as YAML 1.2 core types it: null, bool, int, float, string."""
    text = text.strip()
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text.lower() == "true"
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text) and any(c in text for c in ".eE"):
        return float(text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return json.loads(text) if text[0] == '"' else text[1:-1].replace("''", "'")
    return text


def _strip_comment(line):
    """Remove a trailing # comment that is not inside quotes."""
    quote = None
    for index, char in enumerate(line):
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "#" and quote is None and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
    return line.rstrip()


def _inline_list(text, where):
    inner = text.strip()[1:-1].strip()
    if any(c in inner for c in "[]{}"):
        raise YamlSubsetError("{}: nested inline collections need PyYAML".format(where))
    return [parse_scalar(item) for item in inner.split(",")] if inner else []


def read_yaml_subset(text, source="config"):
    """The YAML the template writes: nested `key: value` mappings (space-indented),
    scalars, `[a, b]` lists and `- item` lists of scalars, comments."""
    root = {}
    stack = [(-1, root)]  # (indent, container)
    last_key = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line.strip() or line.strip() in ("---", "..."):
            continue
        where = "{} line {}".format(source, number)
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise YamlSubsetError("{}: indent with spaces, not tabs".format(where))
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        while indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1]
        if body.startswith("- ") or body == "-":
            if not isinstance(parent, list):
                owner = stack[-2][1] if len(stack) > 1 else None
                if not (isinstance(parent, dict) and not parent and isinstance(owner, dict) and last_key):
                    raise YamlSubsetError("{}: a list item needs a 'key:' line above it".format(where))
                parent = owner[last_key] = []
                stack[-1] = (stack[-1][0], parent)
            parent.append(parse_scalar(body[1:]))
            continue
        key, sep, value = body.partition(":")
        if not sep or not key.strip() or (value and not value.startswith(" ")):
            raise YamlSubsetError(
                "{}: expected 'key: value', got {!r}; install PyYAML for full YAML".format(where, body))
        if not isinstance(parent, dict):
            raise YamlSubsetError("{}: mapping inside a list needs PyYAML".format(where))
        key, value = parse_scalar(key), value.strip()
        if value.startswith(("{", "&", "*", "|", ">", "!")):
            raise YamlSubsetError("{}: {!r} needs PyYAML".format(where, value))
        if value.startswith("["):
            parent[key] = _inline_list(value, where)
        elif value:
            parent[key] = parse_scalar(value)
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
        last_key = key
    return root


def flatten(mapping, prefix=""):
    """{"model": {"depth": 50}} -> {"model.depth": 50}; lists stay values."""
    flat = {}
    for key, value in mapping.items():
        name = "{}{}".format(prefix, key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _dump_scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    plain = text and text == text.strip() and parse_scalar(text) == text and not any(c in text for c in ":#[]{},'\"")
    return text if plain else json.dumps(text)


def dump_yaml_subset(mapping, indent=0):
    """The inverse of read_yaml_subset: block mappings, inline lists of scalars."""
    lines = []
    for key, value in mapping.items():
        prefix = " " * indent + _dump_scalar(key) + ":"
        if isinstance(value, dict) and value:
            lines.append(prefix)
            lines.append(dump_yaml_subset(value, indent + 2).rstrip("\n"))
        elif isinstance(value, dict):
            lines.append(prefix + " {}")
        elif isinstance(value, list):
            if any(isinstance(item, (dict, list)) for item in value):
                raise YamlSubsetError("{}: nested collections in a list need PyYAML".format(key))
            lines.append(prefix + " [" + ", ".join(_dump_scalar(item) for item in value) + "]")
        else:
            lines.append(prefix + " " + _dump_scalar(value))
    return "\n".join(lines) + "\n"


def split_keeping_quotes(text):
    """Split on blanks outside quotes and keep the quotes: name='res net' stays one
    item, and '50' stays quoted so that it is typed as a string, as in YAML."""
    items, current, quote = [], [], None
    for char in text:
        if quote is None and char.isspace():
            if current:
                items.append("".join(current))
            current = []
            continue
        if char in "'\"" and quote in (None, char):
            quote = None if quote else char
        current.append(char)
    if quote:
        raise ProjectError("SET: unclosed {} quote".format(quote))
    if current:
        items.append("".join(current))
    return items


def apply_overrides(config, assignments, allow_new=False):
    """SET="optimizer.lr=0.01 model.depth=50" -> a new config; values are typed as
    YAML scalars ([a, b] is a list). An unknown key is an error unless allow_new."""
    values = {}
    for item in split_keeping_quotes(assignments):
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ProjectError("SET: expected key=value, got {!r}".format(item))
        values[key] = _inline_list(text, "SET " + key) if text.strip().startswith("[") else parse_scalar(text)
    return set_values(config, values, allow_new, "SET")


def set_values(config, values, allow_new=False, where="SET"):
    """A copy of config with {dotted.key: value} set; an unknown key is an error
    naming the closest known ones unless allow_new."""
    import copy
    config = copy.deepcopy(config)
    known = flatten(config)
    for key, value in values.items():
        if key not in known and not allow_new:
            near = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
            hint = "; did you mean {}?".format(" or ".join(near)) if near else ""
            raise ProjectError("{}: unknown config key {!r} (SET_NEW=1 adds it){}".format(where, key, hint))
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ProjectError("{}: {} is not a mapping".format(where, part))
        node[parts[-1]] = value
    return config


def config_hash(config):
    """A fingerprint of a config's content, the same for equal configs; nested or
    already flattened (as harvest holds them), the same config gives the same hash."""
    import hashlib
    return hashlib.sha256(json.dumps(flatten(config), sort_keys=True).encode()).hexdigest()[:16]
