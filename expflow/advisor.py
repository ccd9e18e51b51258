"""Where can a job start now, and may it be submitted there?

expflow's side of the template's expflow_runtime/advice.py: generated projects
run it through `make resources` and `make check`, and expflow loads the very
same file, so both count GPUs, recommend and check access alike.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from expflow import runtime
from expflow.cluster import ClusterFacts
from expflow.context import resource_keys
from expflow.errors import ExpflowError, SchedulerError, UsageError

Report = dict[str, Any]
Access = dict[str, Any]


def advice() -> ModuleType:
    return runtime.module("advice")


def slurmkit() -> ModuleType:
    return runtime.module("slurmkit")


def find_project(directory: Path) -> Path | None:
    """directory when it is a generated project, which keeps the access cache
    (of any release: the machinery moved from scripts/ to expflow_runtime/)."""
    machinery = ("expflow_runtime/advice.py", "scripts/resources.py")
    if (directory / "settings.env").is_file() and any((directory / m).is_file() for m in machinery):
        return directory
    return None


def check_values(values: dict[str, str]) -> None:
    for key, value in values.items():
        try:
            slurmkit().check_option(key, value)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def cluster_report(request: dict[str, str], project: Path | None, timeout: float = 30.0) -> Report:
    """`expflow resources`: one sinfo and one squeue. request holds partition,
    gpu_type, gpus and time; partition and gpu_type also narrow the table. The
    accounts come from project's access cache, when there is one."""
    check_values(request)
    view = advice()
    user = slurmkit().current_user()
    try:
        nodes, jobs, warnings = view.query_cluster(timeout=timeout)
    except runtime.module("files").ProjectError as exc:
        raise SchedulerError(str(exc)) from None
    access = view.read_access(str(project), user) if project else None
    wanted = view.make_request(request, request.get("partition", ""))
    return view.build_report(nodes, jobs, user, wanted, access, request.get("gpu_type", ""), warnings)


def render(report: Report, as_json: bool, width: int) -> str:
    if as_json:
        return str(advice().render_json(report))
    return str(advice().render_text(report, width, ": expflow info lists which account may use which partition"))


def account_access(facts: ClusterFacts, project: Path | None, refresh: bool,
                   timeout: float = 10.0) -> tuple[Access | None, str]:
    """(access, where it came from): the project's cache unless refresh; else
    sbatch --test-only for every account and partition at once, then cached in
    the project when there is one. (None, "") without SLURM."""
    if not facts.slurm or not facts.partitions:
        return None, ""
    view = advice()
    if project is not None and not refresh:
        cached = view.read_access(str(project), facts.user, facts.cluster)
        if cached is not None:
            return cached, str(project / view.ACCESS_FILE)
    partitions = [p.name for p in facts.partitions]
    access = view.probe_access(facts.user, facts.accounts, partitions, timeout=timeout, cluster=facts.cluster)
    if project is not None:
        try:
            view.write_access(str(project), access)
        except OSError as exc:
            raise ExpflowError(f"cannot write {project / view.ACCESS_FILE}: {exc.strerror}") from None
    return access, "sbatch --test-only"


def describe_request(values: dict[str, str]) -> str:
    """"account A on partition P with 1x l40s for 01:00:00", leaving out what is unset."""
    words = [f"account {values['account']}" if values.get("account") else "your default account"]
    words.append(f"on partition {values['partition']}" if values.get("partition") else "on the default partition")
    gres = slurmkit().gpu_request(values.get("gpu_type", ""), values.get("gpus", ""))
    words.append(f"with {gres}" if gres else "without GPUs")
    if values.get("time"):
        words.append(f"for {values['time']}")
    return " ".join(words)


def check_access(context: dict[str, str], timeout: float = 30.0) -> str:
    """`scaffold --check-access`: sbatch --test-only on the context's resources.
    Returns what SLURM said when it accepts; raises SchedulerError with its reason."""
    values = {key: context.get(key, "") for key in resource_keys()}
    result = slurmkit().run_command(advice().test_only_argv(values), timeout=timeout)
    outcome = advice().check_outcome(result)
    if not outcome["ok"]:
        raise SchedulerError(f"SLURM refuses {describe_request(values)}: {outcome['reason']}; nothing written")
    when = f" (it would start at {outcome['start']} on {outcome['nodes']})" if outcome["start"] else ""
    return f"SLURM accepts {describe_request(values)}{when}"
