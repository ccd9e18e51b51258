# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Sweep files: reading one, and its points (grid x zip x random) as configs.

Each point of a sweep file (configs/sweep-example.yaml says how to write one)
becomes an ordinary experiment <sweep>-0001, <sweep>-0002, ... Standard
library only, Python 3.6+.
"""

import functools
import itertools
import math
import operator
import os

from . import configs, files, tables, values

ROOT = files.ROOT
SWEEP_KEYS = ("name", "base", "grid", "zip", "random", "set", "resources", "allow_new")
# what each key of a sweep file holds, as a sentence
SHAPES = {"name": (str, "a name"), "base": (str, "a config file's path"), "grid": (dict, "a mapping"),
          "zip": (dict, "a mapping"), "random": (dict, "a mapping"), "set": (dict, "a mapping"),
          "resources": (dict, "a mapping"), "allow_new": (bool, "true or false")}
MAX_POINTS = 100000  # a sweep file that asks for more is a mistake, not a sweep


def sweep_name(value):
    """SWEEP names a sweep file (configs/x.yaml) or a sweep (x)."""
    if not value:
        raise files.ProjectError("name a sweep: SWEEP=configs/lr-sweep.yaml (or SWEEP=lr-sweep once submitted)")
    if value.endswith((".yaml", ".yml")) or "/" in value:
        spec = read_sweep_file(value)
        return spec["name"]
    return files.check_experiment_id(value, "SWEEP")


def read_sweep_file(path):
    if not path:
        raise files.ProjectError("name a sweep file: make sweep SWEEP=configs/sweep-example.yaml")
    full = os.path.join(ROOT, path)
    if not os.path.lexists(full):
        raise files.ProjectError("sweep file {} not found".format(path))
    spec = configs.load_yaml(full, "SWEEP")  # a text file of at most 1 MiB, or one line saying why not
    if not isinstance(spec, dict):
        raise files.ProjectError("{}: a sweep file is a mapping (base, grid, zip, random, set, resources)".format(path))
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        raise files.ProjectError("{}: unknown key {} (known: {})".format(path, unknown[0], ", ".join(SWEEP_KEYS)))
    for key, (kind, what) in SHAPES.items():
        if spec.get(key) is not None and not isinstance(spec[key], kind):
            raise files.ProjectError("{}: {} must be {}, not {!r}".format(path, key, what, spec[key]))
    spec.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    files.check_experiment_id(str(spec["name"]), "the sweep's name")
    values.resource_settings(spec.get("resources") or {}, "{}: resources".format(path))
    spec["file"] = path
    return spec


def grid_points(grid):
    keys = sorted(grid)
    for key in keys:
        if not isinstance(grid[key], list) or not grid[key]:
            raise files.ProjectError("grid: {} needs a non-empty list of values".format(key))
    count_points(functools.reduce(operator.mul, (len(grid[k]) for k in keys), 1))
    return [dict(zip(keys, point)) for point in itertools.product(*(grid[k] for k in keys))]


def count_points(count):
    if count > MAX_POINTS:
        raise files.ProjectError("the sweep has {} points: more than {}".format(count, MAX_POINTS))
    return count


def zip_points(table):
    lengths = {len(v) if isinstance(v, list) else -1 for v in table.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise files.ProjectError("zip: every key needs a list, all of the same length")
    keys = sorted(table)
    return [dict(zip(keys, point)) for point in zip(*(table[k] for k in keys))]


def number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def draw(rng, key, rule):
    """One random value by a rule: choice, uniform, loguniform or int."""
    if not isinstance(rule, dict) or len(rule) != 1:
        raise files.ProjectError("random: {} needs one of choice, uniform, loguniform, int".format(key))
    kind, arguments = next(iter(rule.items()))
    if kind == "choice" and isinstance(arguments, list) and arguments:
        return rng.choice(arguments)
    if not (isinstance(arguments, list) and len(arguments) == 2):
        raise files.ProjectError("random: {}: {} takes [low, high]".format(key, kind))
    low, high = arguments
    if not (number(low) and number(high) and low <= high):
        raise files.ProjectError("random: {}: {} takes [low, high], two numbers, low <= high".format(key, kind))
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "loguniform" and low > 0 and high > 0:
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if kind == "int" and isinstance(low, int) and isinstance(high, int):
        return rng.randint(low, high)
    raise files.ProjectError("random: {}: unknown rule {!r} (choice, uniform, loguniform, int)".format(key, kind))


def random_points(spec):
    spec = dict(spec)
    samples, seed = spec.pop("samples", None), spec.pop("seed", 0)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise files.ProjectError("random: samples must be a whole number, at least 1")
    if not isinstance(seed, (int, str)) or isinstance(seed, bool):
        raise files.ProjectError("random: seed must be a whole number")
    count_points(samples)
    import random  # here: only random sweeps draw
    rng = random.Random(seed)  # recorded in the sweep file: the same draws every time
    keys = sorted(spec)
    return [{key: draw(rng, key, spec[key]) for key in keys} for _ in range(samples)]


def expand(spec):
    """Every point of the sweep: grid x zip x random (each [{}] when absent)."""
    parts = [
        grid_points(spec["grid"]) if spec.get("grid") else [{}],
        zip_points(spec["zip"]) if spec.get("zip") else [{}],
        random_points(spec["random"]) if spec.get("random") else [{}],
    ]
    count_points(functools.reduce(operator.mul, (len(part) for part in parts), 1))
    points = []
    for combination in itertools.product(*parts):
        point = {}
        for part in combination:
            point.update(part)
        points.append(point)
    if points == [{}]:
        raise files.ProjectError("{}: no axes: add grid, zip or random".format(spec["file"]))
    return points


def point_id(name, index, total):
    return "{}-{:0{}d}".format(name, index, max(4, len(str(total))))


def planned_points(spec):
    """[(exp_id, index, values, config)] for every point, configs fully built."""
    base_path = os.path.join(ROOT, spec.get("base") or files.DEFAULT_CONFIG)
    if not os.path.isfile(base_path):
        raise files.ProjectError("{}: base config {} not found".format(spec["file"], spec.get("base")))
    base = configs.load_yaml(base_path, "{}: base".format(spec["file"]))
    if not isinstance(base, dict):
        raise files.ProjectError("{}: base config {} must be a mapping of keys to values".format(
            spec["file"], spec.get("base")))
    base = configs.set_values(base, spec.get("set") or {}, bool(spec.get("allow_new")), "set")
    points = expand(spec)
    planned = []
    for index, point in enumerate(points, 1):
        config = configs.set_values(base, point, bool(spec.get("allow_new")), "sweep point {}".format(index))
        planned.append((point_id(spec["name"], index, len(points)), index, point, config))
    return planned


def point_text(point):
    return " ".join("{}={}".format(k, tables.format_value(v)) for k, v in sorted(point.items()))


def sweep_dir(name):
    return os.path.join(ROOT, "sweeps", name)
