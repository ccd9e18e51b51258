"""What changes between releases besides the template itself, per version step.

Codemods: mechanical rewrites of lines of the user-owned files (the Makefile's
calls into the machinery, the sbatch scripts' `source`). `expflow update`
applies them to both the user's file and the base before the three-way merge,
so a user's edit next to such a line does not conflict with it.

Record migrations: changes to the records the project wrote (experiments/,
sweeps/), an ordered list of steps. Each is idempotent, backs up every record
before it changes it, and writes nothing when it gets no backup (a dry run).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from expflow import runtime
from expflow.errors import UpdateError
from expflow.fileops import Backup, atomic_write_json

Version = tuple[int, int, int]


def parse_version(text: str) -> Version:
    """'0.2.0' -> (0, 2, 0); a suffix after the third number (0.2.0rc1) is ignored."""
    match = re.match(r"^\s*(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise UpdateError(f"unrecognised version {text.strip()!r} (expected X.Y.Z)")
    major, minor, patch = (int(group) for group in match.groups())
    return major, minor, patch


def in_step(step_to: str, project: str, target: str) -> bool:
    """Whether a step that ends at step_to lies between the project's version and the target."""
    return parse_version(project) < parse_version(step_to) <= parse_version(target)


# ----------------------------------------------------------------- codemods

Codemod = Callable[[str], str]


def split_lines(text: str) -> Iterator[tuple[str, str]]:
    """(content, line ending) of each line, so a rewrite keeps the file's endings."""
    for line in text.splitlines(keepends=True):
        content = line.rstrip("\r\n")
        yield content, line[len(content):]


def rewrite_lines(replacements: dict[str, str]) -> Codemod:
    """A codemod that replaces whole lines (compared without their indentation,
    which the new line keeps)."""

    def codemod(text: str) -> str:
        out = []
        for content, ending in split_lines(text):
            stripped = content.strip()
            if stripped in replacements:
                content = content[: len(content) - len(content.lstrip())] + replacements[stripped]
            out.append(content + ending)
        return "".join(out)

    return codemod


# 0.1.0 -> 0.2.0: the machinery moved from scripts/ to expflow_runtime/, behind one entry point.
MAKEFILE_0_1_VARIABLES = (
    "EXPERIMENT := $(PYTHON) -I scripts/experiment.py",
    "HARVEST := $(PYTHON) -I scripts/harvest.py",
    "RESOURCES := $(PYTHON) -I scripts/resources.py",
    "REPORT := $(PYTHON) -I scripts/report.py",
)
MAKEFILE_0_2_VARIABLES = (
    "# The machinery lives in expflow_runtime/ (replaced by expflow update); it takes Ctrl-C once it can stop cleanly.",
    "RUN := trap '' INT; exec $(PYTHON) -I expflow_runtime/run.py",
)
# (old command, new command) at the start of a recipe line, after the tab and @.
MAKEFILE_0_2_RECIPES = (
    *((f"$(EXPERIMENT) {c}", f"$(RUN) {c}") for c in
      ("new", "train", "eval", "resume", "list", "logs", "tail", "cancel", "archive")),
    ("$(RESOURCES) show", "$(RUN) resources"),
    ("$(RESOURCES) check", "$(RUN) check"),
    *((f"$(HARVEST) {c}", f"$(RUN) {c}") for c in ("status", "results", "best")),
    ("$(PYTHON) -I scripts/sweep.py sweep", "$(RUN) sweep"),
    ("$(PYTHON) -I scripts/sweep.py retry", "$(RUN) sweep-retry"),
    ("$(PYTHON) -I scripts/compare.py compare", "$(RUN) compare"),
    ("$(REPORT) report", "$(RUN) report"),
    ("$(PYTHON) scripts/report.py plot", "$(PYTHON) expflow_runtime/run.py plot"),
)
RECIPE = re.compile(r"^(\t[@+-]*)(.*)$")


def rewrite_recipe(content: str) -> str:
    match = RECIPE.match(content)
    if not match:
        return content
    prefix, command = match.groups()
    for old, new in MAKEFILE_0_2_RECIPES:
        if command == old or command.startswith(old + " ") or command.startswith(old + "\t"):
            return prefix + new + command[len(old):]
    return content


def makefile_0_2_0(text: str) -> str:
    """The four variables become the one RUN (at the first one's place); recipes call $(RUN)."""
    out: list[str] = []
    replaced = False
    for content, ending in split_lines(text):
        if content.strip() in MAKEFILE_0_1_VARIABLES:
            if not replaced:
                out.extend(line + (ending or "\n") for line in MAKEFILE_0_2_VARIABLES)
                replaced = True
            continue
        out.append(rewrite_recipe(content) + ending)
    return "".join(out)


sbatch_0_2_0 = rewrite_lines({
    "# shellcheck source=scripts/job-lib.sh": "# shellcheck source=expflow_runtime/job-lib.sh",
    "source scripts/job-lib.sh": "source expflow_runtime/job-lib.sh",
})


@dataclass(frozen=True)
class CodemodStep:
    from_version: str
    to_version: str
    codemods: dict[str, Codemod]  # user-owned file (relpath) -> its rewrite
    # Text that must not remain in a file after the step (the codemods cannot
    # reach a user's own lines): relpath -> {old text: what replaces it}.
    stale: dict[str, dict[str, str]] = field(default_factory=dict)


MACHINERY_0_1_CALLS = {f"scripts/{name}.py": "expflow_runtime/run.py" for name in (
    "experiment", "harvest", "projectlib", "slurmkit", "jobrecord", "tables", "compare", "report", "sweep",
    "resources")}

CODEMODS = [
    CodemodStep("0.1.0", "0.2.0",
                {"Makefile": makefile_0_2_0, "scripts/train.sbatch": sbatch_0_2_0, "scripts/eval.sbatch": sbatch_0_2_0},
                stale={
                    "Makefile": {"$(EXPERIMENT)": "$(RUN)", "$(HARVEST)": "$(RUN)", "$(RESOURCES)": "$(RUN)",
                                 "$(REPORT)": "$(RUN)", **MACHINERY_0_1_CALLS},
                    "scripts/train.sbatch": {"scripts/job-lib.sh": "expflow_runtime/job-lib.sh"},
                    "scripts/eval.sbatch": {"scripts/job-lib.sh": "expflow_runtime/job-lib.sh"},
                }),
]


# ----------------------------------------------------------------- answers

# Template values new in a release whose default would change what an existing
# project asks SLURM for: a project updated across the release gets the value
# that keeps its old behaviour (0.3.0: CPUs scale with GPUs only when asked to).
KEEP_BEHAVIOUR: list[tuple[str, dict[str, str]]] = [
    ("0.3.0", {"cpus_per_gpu": ""}),
]


def complete_answers(answers: dict[str, str], project: str, target: str) -> dict[str, str]:
    """answers, plus the KEEP_BEHAVIOUR values of the releases between project and
    target that the project has no answer for."""
    completed = dict(answers)
    for version, values in KEEP_BEHAVIOUR:
        if in_step(version, project, target):
            for key, value in values.items():
                completed.setdefault(key, value)
    return completed


def codemod_steps(project: str, target: str) -> list[CodemodStep]:
    return [step for step in CODEMODS if in_step(step.to_version, project, target)]


def apply_codemods(relpath: str, content: bytes, steps: list[CodemodStep]) -> bytes:
    """content of user-owned file relpath with each step's codemod for it applied in order;
    a file that is not UTF-8 text is left as it is."""
    rewrites = [step.codemods[relpath] for step in steps if relpath in step.codemods]
    if not rewrites:
        return content
    try:
        text = content.decode()
    except UnicodeDecodeError:
        return content
    for rewrite in rewrites:
        text = rewrite(text)
    return text.encode()


def stale_references(relpath: str, content: bytes, steps: list[CodemodStep]) -> dict[str, str]:
    """{old text still in the file: what replaces it} after the update."""
    text = content.decode(errors="replace")
    found: dict[str, str] = {}
    for step in steps:
        found.update((old, new) for old, new in step.stale.get(relpath, {}).items() if old in text)
    return found


# ----------------------------------------------------------------- record migrations

# migrate(project_dir, backup) -> relpaths of the records it changed, or, when
# backup is None (a dry run), of those it would change, writing nothing.
RecordMigrate = Callable[[Path, Optional[Backup]], list[str]]


@dataclass(frozen=True)
class RecordMigration:
    from_version: str
    to_version: str
    description: str
    migrate: RecordMigrate


def rewrite_json_records(project: Path, backup: Backup | None, patterns: tuple[str, ...],
                         change: Callable[[Any], Any]) -> list[str]:
    """Apply change to the JSON of each record matching the glob patterns (relative
    to the project); a record whose JSON change() leaves equal is not touched,
    which makes a migration written with it idempotent."""
    changed = []
    for pattern in patterns:
        for path in sorted(project.glob(pattern)):
            relpath = path.relative_to(project).as_posix()
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise UpdateError(f"cannot read record {relpath}: {exc}") from exc
            new = change(json.loads(json.dumps(old)))  # change() gets its own copy
            if new == old:
                continue
            changed.append(relpath)
            if backup is not None:
                backup.copy(relpath)
                atomic_write_json(path, new)
    return changed


def journal_from_metadata(project: Path, backup: Backup | None) -> list[str]:
    """0.2.0 keeps an experiment's jobs in its journal (experiments/<id>/jobs/, files
    written once, expflow_runtime/ledger.py) instead of metadata.json's "jobs"
    list: each listed job becomes an intent and its outcome, named to sort before
    any later entry, then the list is emptied. Entries go first, so a migration
    cut short is finished by the next run (create_exclusive skips what exists)."""
    ledger = runtime.module("ledger")
    changed = []
    paths = [*project.glob("experiments/*/metadata.json"), *project.glob("archive/*/metadata.json")]
    for path in sorted(p for p in paths if not p.parent.is_symlink()):
        relpath = path.relative_to(project).as_posix()
        try:
            metadata = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UpdateError(f"cannot read record {relpath}: {exc}") from exc
        jobs = metadata.get("jobs") if isinstance(metadata, dict) else None
        if not jobs:
            continue
        changed.append(relpath)
        if backup is None:
            continue
        backup.copy(relpath)
        journal = path.parent / ledger.JOURNAL
        journal.mkdir(exist_ok=True)
        for index, job in enumerate(jobs):
            entry = f"00000000T000000.{index:06d}-m{index:07d}"
            intent = dict(job, token=f"m{index:07d}", entry=entry, migrated_from="metadata.json")
            ledger.create_exclusive(str(journal / f"{entry}.intent.json"), intent)
            outcome = {"job_id": job.get("job_id", ""), "entry": entry}
            ledger.create_exclusive(str(journal / f"{entry}.job.json"), outcome)
        atomic_write_json(path, dict(metadata, jobs=[]))
    return changed


def cluster_on_jobs(project: Path, backup: Backup | None) -> list[str]:
    """0.4.0 records with each job the cluster it was submitted on (docs/clusters.md):
    a clone of the project on another cluster shows such a job from its records
    instead of asking its own scheduler about a job id that is not its. A SLURM
    job recorded before gets settings.env's CLUSTER, the cluster the project was
    made for (none when it was made without SLURM: CLUSTER local)."""
    files = runtime.module("files")
    try:
        cluster = files.read_settings(str(project)).get("CLUSTER", "")
    except files.ProjectError as exc:
        raise UpdateError(str(exc)) from None
    if cluster in ("", "local"):
        return []

    def change(intent: Any) -> Any:
        if isinstance(intent, dict) and intent.get("backend") == "slurm" and not intent.get("cluster"):
            intent["cluster"] = cluster
        return intent

    return rewrite_json_records(project, backup, ("experiments/*/jobs/*.intent.json",
                                                  "archive/*/jobs/*.intent.json"), change)


RECORD_MIGRATIONS: list[RecordMigration] = [
    RecordMigration("0.1.0", "0.2.0", "jobs move from metadata.json into each experiment's journal (jobs/)",
                    journal_from_metadata),
    RecordMigration("0.3.0", "0.4.0", "each SLURM job records its cluster (settings.env's CLUSTER for earlier jobs)",
                    cluster_on_jobs),
]


def record_steps(project: str, target: str) -> list[RecordMigration]:
    return [step for step in RECORD_MIGRATIONS if in_step(step.to_version, project, target)]
