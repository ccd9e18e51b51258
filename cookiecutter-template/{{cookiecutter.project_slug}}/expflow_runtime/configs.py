# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Configs: the YAML subset read without PyYAML and its writer, SET overrides,
flattening to dotted keys, the config hash, and the config as command-line flags.

Standard library only, Python 3.6+.
"""

import json
import math
import os
import re

from . import files, values


class YamlSubsetError(files.ProjectError):
    """A config uses YAML beyond what the stdlib reader handles (PyYAML not installed)."""


def load_yaml(path, name="config"):
    """Read a YAML config: with PyYAML when importable, else with read_yaml_subset.
    A file that cannot be read or parsed, is not a text file of at most 1 MiB
    (values.read_text_file), or holds what JSON cannot (a date, a key that is
    not a string, an alias) is a ProjectError naming it; name: the variable
    that named the file (FROM, SWEEP)."""
    where = files.display_path(path)
    text = values.read_text_file(path, name)
    try:
        import yaml
    except ImportError:
        return check_data(read_yaml_subset(text, where), where)
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise files.ProjectError("{}: not YAML: {}".format(where, " ".join(str(exc).split()))) from None
    return {} if data is None else check_data(data, where)


SCALARS = (str, int, float, bool, type(None))


def check_data(data, where):
    """data, if JSON holds it as it is: mappings with string keys, lists, strings
    (UTF-8), numbers, booleans, null; each mapping and list once (a YAML alias
    would share one, and a recursive one would never end)."""
    seen, level = set(), [data]
    for _ in range(files.MAX_DEPTH + 1):
        children = []
        for item in level:
            if isinstance(item, SCALARS):
                if isinstance(item, str) and files.SURROGATE.search(item):
                    raise files.ProjectError("{}: {!r} is not UTF-8 text".format(where, item))
                continue
            if not isinstance(item, (dict, list)):
                raise files.ProjectError("{}: {!r} is a {}, not a config value: quote it".format(
                    where, item, type(item).__name__))
            if id(item) in seen:
                raise files.ProjectError("{}: uses a YAML alias (&, *): write the value out".format(where))
            seen.add(id(item))
            for key in item if isinstance(item, dict) else ():
                if not isinstance(key, str):
                    raise files.ProjectError("{}: the key {!r} is not a string: quote it".format(where, key))
            children += item.values() if isinstance(item, dict) else item
        if not children:
            return data
        level = children
    raise files.ProjectError("{}: nested more than {} levels deep".format(where, files.MAX_DEPTH))


_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?\Z")
_SPECIAL_FLOATS = {"{}.{}".format(sign, word): float(sign + name) for sign in ("", "+", "-")
                   for name, words in (("inf", ("inf", "Inf", "INF")), ("nan", ("nan", "NaN", "NAN")))
                   for word in words if name == "inf" or sign == ""}
_SINGLE_QUOTED = re.compile(r"'((?:[^']|'')*)'\Z", re.S)
NULLS = ("", "~", "null", "Null", "NULL")


def parse_scalar(text, where="value"):
    """A YAML scalar as YAML 1.2 core types it: null, bool, int, float (.inf,
    .nan too), string; a "double-quoted" one is read as JSON. A quoted scalar
    that is not one (a bad escape, a stray quote) is a ProjectError naming where."""
    text = text.strip()
    if text in NULLS:
        return None
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text.lower() == "true"
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text) and any(c in text for c in ".eE"):
        return float(text)
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    if text[:1] == '"':
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise files.ProjectError("{}: {} is not a valid double-quoted string ({})".format(
                where, text, str(exc).split(":")[0])) from None
        if not isinstance(value, str):
            raise files.ProjectError("{}: {} is not a valid double-quoted string".format(where, text))
        if files.SURROGATE.search(value):
            raise files.ProjectError("{}: {} is not UTF-8 text".format(where, text))
        return value
    if text[:1] == "'":
        match = _SINGLE_QUOTED.match(text)
        if not match:
            raise files.ProjectError("{}: {} is not a valid single-quoted string (write ' as '')".format(where, text))
        return match.group(1).replace("''", "'")
    return text


def _outside_quotes(line):
    """(index, char) of each character of line outside quoted scalars: a quote
    opens one only where a scalar starts; 'it''s' and "a\\"b" stay one."""
    quote, skip = None, False
    for index, char in enumerate(line):
        if skip:
            skip = False
        elif quote == '"':
            skip = char == "\\"
            quote = None if char == '"' else quote
        elif quote == "'":
            skip = char == "'" and line[index + 1:index + 2] == "'"
            quote = None if char == "'" and not skip else quote
        elif char in "'\"" and (index == 0 or line[index - 1] in " \t[,"):
            quote = char
        else:
            yield index, char


def _strip_comment(line):
    """Remove a trailing # comment that is not inside quotes."""
    for index, char in _outside_quotes(line):
        if char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
    return line.rstrip()


def _inline_list(text, where):
    """[a, 'b, c', 3] -> a list of scalars (quoted commas are the item's)."""
    text = text.strip()
    if not text.endswith("]"):
        raise YamlSubsetError("{}: a list [...] needs its closing ]".format(where))
    inner = text[1:-1]
    cuts = [index for index, char in _outside_quotes(inner) if char == ","]
    if any(char in "[]{}" for _, char in _outside_quotes(inner)):
        raise YamlSubsetError("{}: nested inline collections need PyYAML".format(where))
    if not inner.strip():
        return []
    items = [inner[start + 1:end] for start, end in zip([-1] + cuts, cuts + [len(inner)])]
    if any(not item.strip() for item in items):
        raise YamlSubsetError("{}: an empty item in {}".format(where, text))
    return [parse_scalar(item, where) for item in items]


def _split_key(body, where):
    """'key: value' -> (key text, value text); a quoted key may hold ': '."""
    for index, char in _outside_quotes(body):
        if char == ":" and body[index + 1:index + 2] in ("", " "):
            return body[:index], body[index + 1:]
    raise YamlSubsetError("{}: expected 'key: value', got {!r}; install PyYAML for full YAML".format(where, body))


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
            parent.append(parse_scalar(body[1:], where))
            continue
        key, value = _split_key(body, where)
        if not key.strip():
            raise YamlSubsetError("{}: expected 'key: value', got {!r}".format(where, body))
        if not isinstance(parent, dict):
            raise YamlSubsetError("{}: mapping inside a list needs PyYAML".format(where))
        key, value = parse_scalar(key, where), value.strip()
        if value == "{}":
            parent[key] = {}
        elif value.startswith(("{", "&", "*", "|", ">", "!")):
            raise YamlSubsetError("{}: {!r} needs PyYAML".format(where, value))
        elif value.startswith("["):
            parent[key] = _inline_list(value, where)
        elif value:
            parent[key] = parse_scalar(value, where)
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


# A string goes unquoted only when every YAML reader takes it for that same string:
# a letter or _ first (no number, date, .inf, -, !, &, *, |, >, %, @, `, ...), then
# letters, digits and _ . / -, and not a word YAML 1.1 or 1.2 reads as a boolean or null.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*\Z")
_YAML_WORDS = ("y", "yes", "n", "no", "true", "false", "on", "off", "null")
# What a YAML reader would take for a line break or refuse as unprintable, and
# str.splitlines() splits on: written as \uXXXX escapes.
_YAML_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def _escape(match):
    return "\\u{:04x}".format(ord(match.group()))


def _dump_float(value):
    """A float every YAML reader reads back as that float: 1.0e+16 (YAML 1.1
    wants the dot and the sign), .inf, -.inf, .nan."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        return "{}.0e{}".format(mantissa, exponent if exponent[:1] in "+-" else "+" + exponent)
    return text


def _dump_scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        return _dump_float(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and parse_scalar(text) == text:
        return text
    return _YAML_UNSAFE.sub(_escape, json.dumps(text, ensure_ascii=False))


def comment_line(text):
    """text as one YAML comment line, whatever it holds."""
    return "# " + _YAML_UNSAFE.sub(_escape, text.replace("\n", "\\n").replace("\r", "\\r")) + "\n"


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


# A key SET names: dotted parts, none empty, without blanks, quotes or "=".
SET_KEY = re.compile(r"[^\s.=\"']+(\.[^\s.=\"']+)*\Z")


def parse_assignments(assignments):
    """SET="optimizer.lr=0.01 model.depth=50" -> {key: value}; values are typed
    as YAML scalars ([a, b] is a list); every problem is a ProjectError."""
    files.check_value("SET", assignments)  # a newline would end the line config.yaml records it on
    parsed = {}
    for item in values.split_keeping_quotes(assignments, "SET"):
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise files.ProjectError("SET: expected key=value, got {!r}".format(item))
        if not SET_KEY.match(key):
            raise files.ProjectError("SET: {!r} is not a config key: dotted names without blanks, quotes or "
                                     "'=' (optimizer.lr)".format(key))
        where = "SET " + key
        parsed[key] = _inline_list(text, where) if text.strip().startswith("[") else parse_scalar(text, where)
    return parsed


def apply_overrides(config, assignments, allow_new=False):
    """SET="optimizer.lr=0.01 model.depth=50" -> a new config. An unknown key is
    an error unless allow_new."""
    return set_values(config, parse_assignments(assignments), allow_new, "SET")


def set_values(config, settings, allow_new=False, where="SET"):
    """A copy of config with {dotted.key: value} set; an unknown key is an error
    naming the closest known ones unless allow_new."""
    import copy  # here: only the commands that set values need it
    config = copy.deepcopy(config)
    known = flatten(config)
    for key, value in settings.items():
        if not isinstance(key, str) or not SET_KEY.match(key):
            raise files.ProjectError("{}: {!r} is not a config key: dotted names without blanks, quotes or "
                                     "'=' (optimizer.lr)".format(where, key))
        if key not in known and not allow_new:
            raise files.ProjectError("{}: unknown config key {!r} (SET_NEW=1 adds it){}".format(
                where, key, did_you_mean(key, known)))
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise files.ProjectError("{}: {} is not a mapping".format(where, part))
        node[parts[-1]] = value
    return config


def near_keys(key, known):
    """The known dotted keys a mistyped key may mean: the same last name
    elsewhere (lr -> optimizer.lr), then every close spelling of the whole key
    or of its last name (optimizer.lrr, optimiser.lr, model.dept)."""
    import difflib  # here: only a mistyped key needs it
    last = key.split(".")[-1]
    near = [k for k in known if k.split(".")[-1] == last]
    near += difflib.get_close_matches(key, list(known), n=10, cutoff=0.75)
    by_last = {}
    for name in known:
        by_last.setdefault(name.split(".")[-1], []).append(name)
    for close in difflib.get_close_matches(last, list(by_last), n=10, cutoff=0.75):
        near += by_last[close]
    return [k for i, k in enumerate(near) if k != key and k not in near[:i]]


def did_you_mean(key, known):
    near = near_keys(key, known)
    return "; did you mean {}?".format(" or ".join(near)) if near else ""


# ----------------------------------------------------------------- the config as command-line flags

def command_line_flags(config, mapping=()):
    """The config as flags for an argparse program: every leaf as --dotted.key=value,
    or with mapping (["optimizer.lr=--lr", ...]) only the keys named, under the
    flags given. true is the bare flag (store_true) and false, null and [] leave
    it out; a list is the flag and then each item (nargs="+"); a mapping key that
    names a section passes each of its leaves under the flag plus the rest of
    its name (model=--net: --net.depth=2)."""
    flat = flatten(config)
    chosen = []
    for item in mapping:
        key, sep, flag = item.partition("=")
        if not sep or not flag.startswith("-") or "=" in flag or not SET_KEY.match(key):
            raise files.ProjectError("config flags: expected key=--flag, got {!r}".format(item))
        leaves = [k for k in flat if k == key or k.startswith(key + ".")]
        if not leaves:
            raise files.ProjectError("config flags: no key {!r} in the config{}".format(key, did_you_mean(key, flat)))
        chosen += [(leaf, flag + leaf[len(key):]) for leaf in leaves]
    if not mapping:
        chosen = [(key, "--" + key) for key in flat]
    argv = []
    for key, flag in chosen:
        argv += flag_arguments(flag, flat[key])
    return argv


def flag_arguments(flag, value):
    if value is True:
        return [flag]
    if value is False or value is None or value == [] or value == {}:
        return []
    if isinstance(value, list):
        return [flag] + [flag_value(item) for item in value]
    return ["{}={}".format(flag, flag_value(value))]


def flag_value(value):
    """A value as a program reads it from argv: YAML's spelling of numbers and
    booleans (0.1, 1e-05, true), JSON for what nests."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def config_flags(argv, env):
    """run.py config-flags EXP_DIR [key=--flag ...] (job-lib.sh's config_flags):
    the experiment's config.json as NUL-terminated arguments, then the record
    END; an error prints none, and the job stops before anything runs."""
    if not argv:
        raise files.ProjectError("config flags: expected the experiment's directory")
    config, problem = files.read_json(os.path.join(argv[0], "config.json"))
    if not isinstance(config, dict):
        raise files.ProjectError("config flags: {}".format(problem or "config.json is not a mapping"))
    return files.write_records(command_line_flags(config, argv[1:]))


def config_hash(config):
    """A fingerprint of a config's content, the same for equal configs; nested or
    already flattened (as harvest holds them), the same config gives the same hash."""
    import hashlib  # here: 2 ms of every command's start, for the few that hash
    return hashlib.sha256(json.dumps(flatten(config), sort_keys=True).encode()).hexdigest()[:16]
