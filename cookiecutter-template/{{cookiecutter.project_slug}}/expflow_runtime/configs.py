# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Configs: the YAML subset read without PyYAML and its writer, SET overrides,
flattening to dotted keys, and the config hash.

Standard library only, Python 3.6+.
"""

import copy
import hashlib
import json
import re

from . import files


class YamlSubsetError(files.ProjectError):
    """A config uses YAML beyond what the stdlib reader handles (PyYAML not installed)."""


def load_yaml(path):
    """Read a YAML config: with PyYAML when importable, else with read_yaml_subset.
    A file that cannot be read or parsed is a ProjectError naming it."""
    where = files.display_path(path)
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
    except OSError as exc:
        raise files.ProjectError("cannot read {}: {}".format(where, exc.strerror or exc)) from None
    except UnicodeDecodeError:
        raise files.ProjectError("{} is not UTF-8 text".format(where)) from None
    try:
        import yaml
    except ImportError:
        return read_yaml_subset(text, path)
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise files.ProjectError("{}: not YAML: {}".format(where, " ".join(str(exc).split()))) from None
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
        raise files.ProjectError("SET: unclosed {} quote".format(quote))
    if current:
        items.append("".join(current))
    return items


def apply_overrides(config, assignments, allow_new=False):
    """SET="optimizer.lr=0.01 model.depth=50" -> a new config; values are typed as
    YAML scalars ([a, b] is a list). An unknown key is an error unless allow_new."""
    files.check_value("SET", assignments)  # a newline would end the line config.yaml records it on
    values = {}
    for item in split_keeping_quotes(assignments):
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise files.ProjectError("SET: expected key=value, got {!r}".format(item))
        values[key] = _inline_list(text, "SET " + key) if text.strip().startswith("[") else parse_scalar(text)
    return set_values(config, values, allow_new, "SET")


def set_values(config, values, allow_new=False, where="SET"):
    """A copy of config with {dotted.key: value} set; an unknown key is an error
    naming the closest known ones unless allow_new."""
    config = copy.deepcopy(config)
    known = flatten(config)
    for key, value in values.items():
        if key not in known and not allow_new:
            near = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
            hint = "; did you mean {}?".format(" or ".join(near)) if near else ""
            raise files.ProjectError("{}: unknown config key {!r} (SET_NEW=1 adds it){}".format(where, key, hint))
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise files.ProjectError("{}: {} is not a mapping".format(where, part))
        node[parts[-1]] = value
    return config


def config_hash(config):
    """A fingerprint of a config's content, the same for equal configs; nested or
    already flattened (as harvest holds them), the same config gives the same hash."""
    return hashlib.sha256(json.dumps(flatten(config), sort_keys=True).encode()).hexdigest()[:16]
