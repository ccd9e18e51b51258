# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Experiments side by side, differences only: the config keys that differ, the
metrics, and what differs in how they ran (GPU type, node, partition, commit,
dirty tree, Python, and the package versions that differ between their
environment snapshots). make compare prints it, make report shows it in HTML.

Standard library only, Python 3.6+.
"""

import os

from . import files, tables


def train_record(experiment):
    job = files.latest_job(experiment["metadata"], "train")
    if job is None:
        return None, {}
    return job, experiment["records"].get(("train", str(job["job_id"]))) or {}


def packages(experiment):
    """{name: version} from the training job's package list (pip freeze or conda)."""
    _, record = train_record(experiment)
    packages = record.get("packages") if isinstance(record, dict) else None
    listing = packages.get("file") if isinstance(packages, dict) else None
    found = {}
    if not listing or not isinstance(listing, str):
        return found
    try:  # bytes that are not UTF-8 (a package's odd name) are replaced, not a traceback
        with open(os.path.join(experiment["path"], listing), encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return found
    except OSError as exc:
        files.warn("experiment {}: {}: {}".format(experiment["id"], os.path.basename(listing), exc.strerror or exc))
        return found
    for line in lines:
        if line.strip() and not line.startswith("#"):
            name, version = package_line(line.strip())
            found[name.lower()] = version
    return found


def package_line(line):
    """(name, version) of one line of pip freeze or conda list --export:
    name==1.2, name @ file:///..., -e git+https://...@abc#egg=name, name=1.2=py_0."""
    if line.startswith("-e "):
        where = line[3:].strip()
        name = where.rpartition("#egg=")[2] if "#egg=" in where else where.rstrip("/").rpartition("/")[2]
        return name.split("&")[0], "editable " + where.partition("#egg=")[0]
    if " @ " in line:
        name, _, where = line.partition(" @ ")
        return name.strip(), where.strip()
    if "==" in line:
        name, _, version = line.partition("==")
        return name.strip(), version.strip()
    name, _, rest = line.partition("=")  # conda: name=version=build
    return name.strip(), rest.partition("=")[0].strip() or line


def how_it_ran(experiment, row):
    job, record = train_record(experiment)
    git = (job or {}).get("git") or {}
    return {
        "gpu_type": row.get("gpu_type", ""), "gpus": row.get("gpus", ""), "node": row.get("node", ""),
        "partition": row.get("partition", ""), "commit": (git.get("commit") or "")[:8],
        "dirty": tables.format_value(git.get("dirty", "")), "python": record.get("python", ""),
    }


def differing(values_by_exp, only_differences=True):
    """[(key, [value per experiment])] for keys whose values differ."""
    keys = sorted({key for values in values_by_exp for key in values})
    rows = []
    for key in keys:
        cells = [tables.format_value(values.get(key, "")) for values in values_by_exp]
        if not only_differences or len(set(cells)) > 1:
            rows.append((key, cells))
    return rows


def package_differences(listings):
    """One row per package whose version differs among the experiments that list
    it (two or more); the packages only some list, one row that counts them (a
    conda env beside a venv would otherwise be 100 rows of blanks)."""
    listed = [listing for listing in listings if listing]
    if len(listed) < 2:
        return []
    shared = set.intersection(*(set(listing) for listing in listed))
    rows = []
    for key in sorted({key for listing in listed for key in listing}):
        versions = [listing[key] for listing in listed if key in listing]
        if len(versions) > 1 and len(set(versions)) > 1:
            rows.append(("package " + key, [tables.format_value(listing.get(key, "")) for listing in listings]))
    if any(set(listing) - shared for listing in listed):
        rows.append(("packages not in all", [only_here(listing, shared) for listing in listings]))
    return rows


def only_here(listing, shared, shown=3):
    if not listing:
        return "(no package list)"
    extra = sorted(set(listing) - shared)
    names = ", ".join(extra[:shown]) + (", ..." if len(extra) > shown else "")
    return "{} ({})".format(len(extra), names) if extra else "0"


def comparison(experiments, rows):
    """[(section title, [(key, [value per experiment])])]."""
    ran = [how_it_ran(exp, row) for exp, row in zip(experiments, rows)]
    package_rows = package_differences([packages(exp) for exp in experiments])
    return [
        ("config (keys that differ)", differing([row["params"] for row in rows])),
        ("metrics", differing([row["metrics"] for row in rows], only_differences=False)),
        ("how they ran (what differs)", differing(ran) + package_rows),
    ]
