"""Probe the machine and its SLURM cluster once; never crash.

Every SLURM command runs with a timeout, the independent ones concurrently and
in the background: start_detect() starts them and returns at once, so that
`expflow scaffold` loads cookiecutter while SLURM answers. The accounts come
from slurmctld (scontrol), and from slurmdbd (sacctmgr) only when it has none.
A missing, failing or hanging command leaves a default and a WARNING line in
ClusterFacts.warnings. Parsing is done by the pure functions of slurmkit.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from expflow import runtime
from expflow.cluster import ClusterFacts, PartitionFacts
from expflow.context import usable_text

Runner = Callable[..., Any]  # slurmkit.run_command's signature: (argv, timeout) -> CommandResult

SCRATCH_PATTERNS = ("/scratch/{user}", "/scratch/users/{user}", "/global/scratch/{user}", "/gpfs/scratch/{user}")


def find_scratch(user: str, env: Mapping[str, str]) -> tuple[str, str]:
    """(directory, source): $SCRATCH, then the usual per-user scratch paths; the
    first that exists and is writable, and can be a setting (one line of
    UTF-8 text). ("", "none found") when none is."""
    candidates = [(env["SCRATCH"], "$SCRATCH")] if env.get("SCRATCH") else []
    candidates += [(pattern.format(user=user), pattern) for pattern in SCRATCH_PATTERNS]
    for path, source in candidates:
        if usable_text(path) and os.path.isdir(path) and os.access(path, os.W_OK):
            return path, source
    return "", "none found"


def find_conda_base(env: Mapping[str, str]) -> str:
    """Conda's install directory from $CONDA_EXE (set by an activated conda);
    none when the path cannot be a setting (a newline, bytes not UTF-8)."""
    conda_exe = env.get("CONDA_EXE", "")
    return str(Path(conda_exe).parent.parent) if conda_exe and usable_text(conda_exe) else ""


def accounts_argv(user: str) -> list[str]:
    """slurmkit.sacctmgr_assoc_argv(user) without its Partition and QOS columns:
    detect reads only Cluster and Account, and to print QOS names sacctmgr makes
    one more request to slurmdbd (0.09 s of its 0.27 s on the test cluster).
    The same `show assoc`, so the accounts come in the same order."""
    return ["sacctmgr", "--noheader", "--parsable2", "show", "assoc", "user=" + user, "format=Cluster,Account"]


def _ask_accounts(user: str, run: Runner, timeout: float) -> dict[str, Any]:
    """The user's accounts and default account from slurmctld's cache of
    associations (`scontrol show assoc_mgr`, a few ms); the two sacctmgr queries,
    which ask slurmdbd (0.18 s on the test cluster), only when scontrol fails or
    shows none of the user's associations (no accounting storage, a user it does
    not know). Asked one after the other, not at once: a scaffold that does not
    need sacctmgr would still wait for it at exit (the threads are joined), and
    the fallback costs scontrol's few ms.
    -> {"accounts": ..., "default_account": ...}, or sacctmgr's CommandResults."""
    slurmkit = runtime.module("slurmkit")
    result = run(slurmkit.scontrol_assoc_mgr_argv(user), timeout=timeout)
    accounts, default = slurmkit.parse_scontrol_assoc_mgr(result.stdout) if result.ok else ([], "")
    if accounts:
        return {"accounts": tuple(accounts), "default_account": default}
    return slurmkit.run_concurrently({"user": slurmkit.sacctmgr_user_argv(user), "assoc": accounts_argv(user)},
                                     run=run, timeout=timeout)


def _start_queries(user: str, run: Runner | None, timeout: float) -> Callable[[], dict[str, Any]]:
    """Start the SLURM queries at once, each in a thread of its own with its own
    timeout (a slow scheduler costs one timeout, not the sum) -> a function that
    waits for their answers by name."""
    slurmkit = runtime.module("slurmkit")
    run = run or slurmkit.run_command
    commands = {"config": slurmkit.SCONTROL_CONFIG_ARGV, "sinfo": slurmkit.SINFO_PARTITIONS_ARGV}
    pool = ThreadPoolExecutor(max_workers=len(commands) + 1)
    futures = {name: pool.submit(run, argv, timeout=timeout) for name, argv in commands.items()}
    futures["accounts"] = pool.submit(_ask_accounts, user, run, timeout)
    pool.shutdown(wait=False)  # each thread ends with its query; result() below waits for them
    return lambda: {name: future.result() for name, future in futures.items()}


def start_detect(
    env: Mapping[str, str] | None = None,
    run: Runner | None = None,
    timeout: float = 5.0,
) -> Callable[[], ClusterFacts]:
    """detect() in two halves: start the SLURM queries now and return at once a
    function that waits for their answers and reads them. `expflow scaffold`
    starts them first and loads cookiecutter meanwhile: it waits only for what
    SLURM has not answered by then (a slow controller, the sacctmgr fallback)."""
    env = os.environ if env is None else env
    account = pwd.getpwuid(os.getuid())
    slurm = shutil.which("sbatch", path=env.get("PATH")) is not None
    on_path = slurm or shutil.which("sinfo", path=env.get("PATH")) is not None
    answers = _start_queries(account.pw_name, run, timeout) if on_path else None
    return lambda: _read_facts(env, account.pw_name, account.pw_dir, slurm, answers)


def detect(
    env: Mapping[str, str] | None = None,
    run: Runner | None = None,
    timeout: float = 5.0,
) -> ClusterFacts:
    """Everything expflow needs to know, with where each value came from."""
    return start_detect(env, run, timeout)()


def _read_facts(env: Mapping[str, str], user: str, home: str, slurm: bool,
                answers: Callable[[], dict[str, Any]] | None) -> ClusterFacts:
    """The facts, from the machine and (answers: None without SLURM commands on
    PATH) the SLURM queries' results."""
    scratch, scratch_source = find_scratch(user, env)
    sources = {"user": "password database", "home": "password database", "scratch": scratch_source}
    warnings: list[str] = []
    if not scratch:
        warnings.append("no scratch directory found ($SCRATCH, /scratch/<user>, ...): large files stay in the project")

    for name in ("SCRATCH", "CONDA_EXE"):
        if env.get(name) and not usable_text(env[name]):
            warnings.append(f"${name} holds a newline, a control character or bytes that are not UTF-8: not used")
    conda_base = find_conda_base(env)
    sources["conda_base"] = "$CONDA_EXE" if conda_base else "not found"
    facts: dict[str, Any] = {"user": user, "home": home, "scratch": scratch, "conda_base": conda_base, "slurm": slurm}
    if answers is None:
        warnings.append("no SLURM commands on PATH: projects will run jobs on this machine (local backend)")
        facts.update(cluster=env.get("SLURM_CLUSTER_NAME") or socket.gethostname(), accounting=False)
        sources["cluster"] = "$SLURM_CLUSTER_NAME" if env.get("SLURM_CLUSTER_NAME") else "hostname"
        return ClusterFacts(**facts, sources=sources, warnings=tuple(warnings))

    results = answers()
    facts.update(_read_config(results["config"], env, sources, warnings))
    facts.update(_read_partitions(results["sinfo"], sources, warnings))
    # one slurmdbd may serve several clusters: keep the associations of the one ClusterName names
    cluster = facts["cluster"] if sources["cluster"] == "scontrol show config" else ""
    facts.update(_read_accounts(results["accounts"], facts["accounting"], cluster, sources, warnings))
    return ClusterFacts(**facts, sources=sources, warnings=tuple(warnings))


def _read_config(result: Any, env: Mapping[str, str], sources: dict[str, str], warnings: list[str]) -> dict[str, Any]:
    slurmkit = runtime.module("slurmkit")
    config = slurmkit.parse_scontrol_config(result.stdout) if result.ok else {}
    if not result.ok:
        warnings.append(f"could not read the SLURM configuration ({slurmkit.describe_failure(result)})")
    if config.get("ClusterName"):
        cluster, sources["cluster"] = config["ClusterName"], "scontrol show config"
    elif env.get("SLURM_CLUSTER_NAME"):
        cluster, sources["cluster"] = env["SLURM_CLUSTER_NAME"], "$SLURM_CLUSTER_NAME"
    else:
        cluster, sources["cluster"] = socket.gethostname(), "hostname"
    max_array = config.get("MaxArraySize", "")
    sources["accounting"] = "scontrol show config" if config else "default"
    # Without the config, assume accounting is on: sacctmgr's answer decides below.
    accounting = slurmkit.accounting_enabled(config) if config else True
    mail_domain = config.get("MailDomain", "")
    sources["mail_domain"] = "scontrol show config" if config else "default"
    return {"cluster": cluster, "accounting": accounting,
            "max_array_size": int(max_array) if max_array.isdigit() else None,
            "mail_domain": "" if mail_domain in ("", "(null)") else mail_domain}


def _read_partitions(result: Any, sources: dict[str, str], warnings: list[str]) -> dict[str, Any]:
    slurmkit = runtime.module("slurmkit")
    if not result.ok:
        warnings.append(f"could not list partitions ({slurmkit.describe_failure(result)}): SLURM's defaults apply")
        sources["partitions"] = "default"
        return {}
    try:
        partitions = slurmkit.parse_sinfo_partitions(result.stdout)
    except ValueError as exc:
        warnings.append(f"could not read sinfo's answer ({exc})")
        sources["partitions"] = "default"
        return {}
    sources["partitions"] = "sinfo"
    return {"partitions": tuple(PartitionFacts(**p._asdict()) for p in partitions)}


def _read_accounts(answer: dict[str, Any], accounting: bool, cluster: str,
                   sources: dict[str, str], warnings: list[str]) -> dict[str, Any]:
    """_ask_accounts's answer: slurmctld's, or sacctmgr's to read."""
    if "assoc" in answer:
        return _read_sacctmgr(answer["user"], answer["assoc"], accounting, cluster, sources, warnings)
    if not accounting:
        sources["accounts"] = "none (accounting disabled)"
        return {}
    sources["accounts"] = "scontrol show assoc_mgr"
    return answer


def _read_sacctmgr(user_result: Any, assoc_result: Any, accounting: bool, cluster: str,
                   sources: dict[str, str], warnings: list[str]) -> dict[str, Any]:
    slurmkit = runtime.module("slurmkit")
    for result in (user_result, assoc_result):
        if not result.ok and slurmkit.accounting_disabled_message(result.stderr):
            sources["accounts"] = sources["accounting"] = "sacctmgr (accounting disabled)"
            return {"accounting": False}
    if not accounting:
        sources["accounts"] = "none (accounting disabled)"
        return {}
    found: dict[str, Any] = {}
    if user_result.ok:
        found["default_account"] = slurmkit.parse_sacctmgr_default_account(user_result.stdout)
    else:
        warnings.append(f"could not read your default account ({slurmkit.describe_failure(user_result)})")
    if assoc_result.ok:
        found["accounts"] = tuple(slurmkit.parse_sacctmgr_accounts(assoc_result.stdout, cluster))
    else:
        warnings.append(f"could not list your accounts ({slurmkit.describe_failure(assoc_result)})")
    sources["accounts"] = "sacctmgr" if found else "default"
    return found
