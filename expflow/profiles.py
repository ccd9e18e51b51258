"""`expflow profile add` and `expflow profile list`: one project, several clusters.

The layout is the runtime's (expflow_runtime/profiles.py: which keys a profile
holds, its file, which profile a cluster gets, splitting one settings.env);
this module fills a new profile from what detect() found on this cluster.
See docs/clusters.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from expflow import runtime
from expflow.advisor import find_project
from expflow.cluster import ClusterFacts
from expflow.context import check_values, detected_values
from expflow.errors import ExpflowError, UsageError


@dataclass(frozen=True)
class Added:
    name: str  # the profile written (or found), profiles/<name>.env
    written: bool  # False: it existed already and was left as it was
    why: str  # how this cluster was told ("cluster greene", "no SLURM here")
    split_into: str = ""  # the profile settings.env's cluster values moved to, if this call split it
    moved: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Listed:
    name: str
    values: dict[str, str]
    here: bool  # the profile this cluster gets


def profiles():
    return runtime.module("profiles")


def project_dir(directory: Path) -> Path:
    project = find_project(directory)
    if project is None:
        raise UsageError(f"{directory} is not an expflow project (no settings.env and expflow_runtime/): "
                         "run this inside the project")
    return project


def this_cluster(project: Path, env: Mapping[str, str]) -> tuple[str, str]:
    """(profile name, why), as the project's own runtime will choose it."""
    try:
        return profiles().choose_profile(str(project), dict(env, PROFILE=""))
    except profiles().files.ProjectError as exc:
        raise ExpflowError(str(exc)) from None


def profile_values(facts: ClusterFacts | None) -> dict[str, str]:
    """A new profile: the detected values of each key a profile holds (the
    checks scaffold makes, against this cluster), the others empty."""
    if facts is None or not facts.slurm:
        return {key: "" for key in profiles().PROFILE_KEYS}
    context = detected_values(facts)
    context.pop("detected_summary", None)
    check_values(context, facts)
    return {key: context.get(key.lower(), "") for key in profiles().PROFILE_KEYS}


def add_profile(directory: Path, facts: ClusterFacts | None, env: Mapping[str, str] | None = None) -> Added:
    """Write profiles/<this cluster>.env from facts. A project of one
    settings.env is split first: its cluster values move to the profile of the
    cluster it was made for (its CLUSTER, else local), nothing lost."""
    project = project_dir(directory)
    env = os.environ if env is None else env
    name, why = this_cluster(project, env)
    module = profiles()
    split_into, moved = "", ()
    try:
        if not module.uses_profiles(str(project)):
            settings = module.files.read_settings(str(project))
            split_into = module.check_name(settings.get("CLUSTER") or module.LOCAL, "CLUSTER")
            moved = tuple(key for key in module.split_settings(str(project), split_into)
                          if key not in module.KEPT_KEYS)
        if name in module.profile_names(str(project)):
            return Added(name, False, why, split_into, moved)
        note = f"Written by `expflow profile add` ({why})."
        module.write_profile(str(project), name, profile_values(facts), note)
    except module.files.ProjectError as exc:
        raise ExpflowError(str(exc)) from None
    return Added(name, True, why, split_into, moved)


def list_profiles(directory: Path, env: Mapping[str, str] | None = None) -> list[Listed]:
    project = project_dir(directory)
    module = profiles()
    names = module.profile_names(str(project))
    here = this_cluster(project, os.environ if env is None else env)[0] if names else ""
    try:
        return [Listed(name, module.read_profile(str(project), name), name == here) for name in names]
    except module.files.ProjectError as exc:
        raise ExpflowError(str(exc)) from None
