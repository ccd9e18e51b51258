"""Turn detected facts and --set overrides into the template's values.

Values that end up on #SBATCH-equivalent command lines are checked here with
the same slurmkit.check_option the generated project uses at submit time, and
the defaults are cookiecutter.json's.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

from expflow import runtime
from expflow.cluster import ClusterFacts
from expflow.errors import UsageError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")  # \Z: "$" would take a final newline
# A newline, NUL or other control character (a tab is fine) cannot be one line of settings.env.
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Bytes that are not UTF-8 (an environment variable's, say): Python holds them as lone surrogates.
SURROGATE = re.compile("[\ud800-\udfff]")
BACKENDS = ("auto", "slurm", "local")
# Settings that are whole numbers: (pattern, what is allowed); ASCII digits only.
NUMBERS = {
    "max_array_size": (re.compile(r"[1-9][0-9]{0,8}\Z"), "a whole number of at least 1 (digits 0-9)"),
    "slurm_accounting": (re.compile(r"[01]\Z"), "1 (sacct works) or 0 (accounting disabled)"),
}


def template_defaults() -> dict[str, Any]:
    """cookiecutter.json's values: the offline defaults, and the only place they live."""
    with open(runtime.template_dir() / "cookiecutter.json") as handle:
        return dict(json.load(handle))


def resource_keys() -> list[str]:
    """The resource settings as template keys (gpu_type), from the runtime's one table."""
    return [key.lower() for key in runtime.module("slurmkit").RESOURCE_KEYS]


def settable_keys() -> list[str]:
    """Keys --set may change: the template's own, minus private and derived ones."""
    return [k for k in template_defaults() if not k.startswith("_") and k not in ("project_slug", "detected_summary")]


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise UsageError(f"invalid project name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def check_location(target: str | Path, slurm: bool = True) -> Path:
    """target, the project's directory, if its jobs can run there: the runtime's
    rule (values.project_path: no control character, and for SLURM no % or
    backslash either), on the path as given and as the file system resolves it."""
    values = runtime.module("values")
    forbidden = values.PROJECT_PATH_FORBIDDEN if slurm else values.PROJECT_PATH_CONTROL
    for path in (os.path.abspath(target), os.path.realpath(target)):
        bad = forbidden.search(path)
        if bad or SURROGATE.search(path):
            what = repr(bad.group()) if bad else "bytes that are not UTF-8"
            raise UsageError(f"cannot create a project at {path!r}: the path holds {what}; sbatch reads % and \\ "
                             "in a log's path as filename patterns, and a control character breaks job arrays: "
                             "choose another -o directory")
    return Path(target)


def targets_slurm(context: dict[str, str], facts: ClusterFacts | None) -> bool:
    """Whether the project's jobs go to SLURM: backend slurm, or auto where SLURM was detected."""
    backend = context.get("backend", "auto")
    return backend == "slurm" or backend == "auto" and facts is not None and facts.slurm


def detected_values(facts: ClusterFacts) -> dict[str, str]:
    """The template values that follow from what was detected."""
    values = {
        "cluster": facts.cluster,
        "slurm_accounting": "1" if facts.accounting else "0",
        "max_array_size": str(facts.max_array_size or template_defaults()["max_array_size"]),
        "account": facts.default_account,
        "partition": facts.default_partition,
        "scratch_root": facts.scratch,
        "env_conda_base": facts.conda_base,
        "mail_user": f"{facts.user}@{facts.mail_domain}" if facts.mail_domain and facts.user else "",
        "detected_summary": f"cluster {facts.cluster}, detected {date.today().isoformat()}",
    }
    values.update(partition_values(facts, facts.default_partition))
    return values


def partition_values(facts: ClusterFacts, name: str) -> dict[str, str]:
    """GPU type/count and time that fit a partition: one GPU of its first type."""
    partition = facts.partition(name)
    if partition is None:
        return {}
    values = {"gpu_type": "", "gpus": "0"}
    if partition.gpus_per_node:
        values = {"gpu_type": partition.gpu_types[0] if partition.gpu_types else "", "gpus": "1"}
        if partition.cpus_per_node:  # a GPU's fair share of its node's CPUs
            values["cpus_per_gpu"] = str(max(1, int(partition.cpus_per_node) // int(partition.gpus_per_node)))
    max_minutes = runtime.module("slurmkit").time_to_minutes(partition.max_time) if partition.max_time else None
    default_time = template_defaults()["time"]
    values["time"] = partition.max_time if max_minutes is not None and max_minutes < 60 else default_time
    return values


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """["gpus=2", ...] -> {"gpus": "2"}; unknown keys are an error."""
    known = settable_keys()
    overrides = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        if key not in known:
            raise UsageError(f"unknown setting {key!r}; known: {', '.join(known)}")
        overrides[key] = check_text(key, value)
    return overrides


def build_context(name: str, facts: ClusterFacts | None, overrides: dict[str, str]) -> dict[str, str]:
    """extra_context for cookiecutter: defaults < detected < overrides, validated."""
    context: dict[str, str] = {"project_name": check_name(name), "project_slug": name}
    if facts is not None:
        context.update(detected_values(facts))
        if "partition" in overrides:
            context.update(partition_values(facts, overrides["partition"]))
    context.update(overrides)
    check_values(context, facts)
    return context


def check_text(key: str, value: str) -> str:
    """value, unless it holds a newline, NUL or other control character, or
    bytes that are not UTF-8."""
    if CONTROL_CHARACTER.search(str(value)):
        raise UsageError(f"{key}={value!r}: a value cannot hold a newline, NUL or other control character")
    if SURROGATE.search(str(value)):
        raise UsageError(f"{key}={value!r}: a value must be UTF-8 text")
    return value


def usable_text(value: str) -> bool:
    """Whether value can be a setting (check_text would take it)."""
    return not CONTROL_CHARACTER.search(value) and not SURROGATE.search(value)


def check_values(context: dict[str, str], facts: ClusterFacts | None) -> None:
    for key, value in context.items():
        check_text(key, value)
    for key, (pattern, allowed) in NUMBERS.items():
        if key in context and not pattern.match(context[key]):
            raise UsageError(f"{key}={context[key]!r} is not {allowed}")
    slurmkit = runtime.module("slurmkit")
    for key in resource_keys():
        try:
            slurmkit.check_option(key, context.get(key, ""))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if context.get("backend", "auto") not in BACKENDS:
        raise UsageError(f"backend={context['backend']!r} is not one of {', '.join(BACKENDS)}")
    if facts is None:
        return
    check_against_cluster(context, facts)


def check_against_cluster(context: dict[str, str], facts: ClusterFacts) -> None:
    """Catch a typo now rather than at the first sbatch: names must exist."""
    partition = context.get("partition", "")
    if partition and facts.partitions:
        found = facts.partition(partition)
        if found is None:
            names = ", ".join(p.name for p in facts.partitions)
            raise UsageError(f"partition {partition!r} is not on cluster {facts.cluster} ({names})")
        gpu_type = context.get("gpu_type", "")
        if gpu_type and gpu_type not in found.gpu_types:
            offered = ", ".join(found.gpu_types) or "none"
            raise UsageError(f"partition {partition} has no {gpu_type!r} GPUs (it has: {offered})")
    account = context.get("account", "")
    if account and facts.accounts and account not in facts.accounts:
        raise UsageError(f"account {account!r} is not yours on {facts.cluster} ({', '.join(facts.accounts)})")
