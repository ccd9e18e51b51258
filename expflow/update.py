"""`expflow update`: bring a generated project to this expflow's template.

The machinery (expflow_runtime/) is generated and replaced whole. Every other
file of the template is the user's: each is merged three ways, the user's
version against the release it was generated with (the base) and the new
release's (theirs), after both the user's and the base had the version steps'
codemods applied (expflow/migrations.py). Then the records are migrated.

update_project() plans everything first (renders, merges, record migrations
in dry-run mode) and raises UpdateError before writing anything; --dry-run
stops there. Every file it changes or removes is copied first into
.expflow/backup-<timestamp>/.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from expflow import merge, migrations
from expflow.answers import (
    RUNTIME_DIR,
    infer_answers_0_1_0,
    read_answers,
    read_pristine,
    record_scaffold,
    user_owned_files,
)
from expflow.errors import TemplateError, UpdateError
from expflow.fileops import Backup, atomic_write_bytes, file_mode, remove_pycache
from expflow.legacy_template import LEGACY_VERSIONS, legacy_defaults, render_legacy
from expflow.machinery import (
    VERSION_FILE,
    MachineryPlan,
    project_version,
    recover_interrupted_swap,
    stage_machinery,
    swap_machinery,
    template_version,
)
from expflow.template import render as render_literally

__all__ = ["FileAction", "UpdateReport", "record_scaffold", "update_project"]


# Outcomes besides merge's (unchanged, updated, kept, merged, conflict).
CREATED = "created"
REMOVED = "removed"
OBSOLETE = "obsolete"  # the new release dropped it, but the user changed it: kept
DELETED = "deleted"  # the user deleted it: left deleted
STALE = "stale"  # a second line for a file that still names what the new release removed
WRITES = (merge.UPDATED, merge.KEPT, merge.MERGED, merge.CONFLICT, merge.UNCHANGED, CREATED)


@dataclass
class FileAction:
    """What update does to one user-owned file; content None: remove it."""

    path: str
    outcome: str
    message: str
    content: bytes | None = None
    mode: int = 0o644
    warning: bool = False

    def line(self) -> str:
        return f"{'WARNING:' if self.warning else '[OK]'} {self.path}: {self.message}"


@dataclass
class UpdateReport:
    project: Path
    from_version: str
    to_version: str
    dry_run: bool = False
    files: list[FileAction] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    backup: str | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def conflicts(self) -> list[str]:
        return [action.path for action in self.files if action.outcome == merge.CONFLICT]

    @property
    def up_to_date(self) -> bool:
        return self.from_version == self.to_version


def update_project(project_dir: Path, *, dry_run: bool = False, force: bool = False,
                   template: Path | None = None) -> UpdateReport:
    """Update the project in project_dir to the template (default: expflow's own)."""
    project = Path(project_dir).resolve()
    if not project.is_dir():
        raise UpdateError(f"{project_dir} is not a directory")
    if template is None:
        from expflow.runtime import template_dir

        template = template_dir()
    notes = recover_interrupted_swap(project, dry_run)
    report = UpdateReport(project, project_version(project), target_version(template), dry_run)
    if check_versions(report, template):
        report.lines = notes + report.lines
        return report
    notes += check_clean(project, force, dry_run)
    answers, base = old_release(project, report.from_version)
    answers = migrations.complete_answers(answers, report.from_version, report.to_version)
    with tempfile.TemporaryDirectory(prefix="expflow-update-") as tmp:
        render = render_template(template, answers, Path(tmp), report.to_version)
        steps = migrations.codemod_steps(report.from_version, report.to_version)
        report.files = plan_files(project, base, user_owned_files(render), steps, report)
        backup = Backup(project, datetime.now().strftime("%Y%m%d-%H%M%S"))
        report.backup = backup.relative()
        plan = MachineryPlan(project, report.from_version, report.to_version, backup)
        record_lines = migrate_records(project, None, report)  # reads every record: errors come before writes
        if not dry_run:
            report.records = []
            stage_machinery(project, render, answers, template)  # first: the largest write fails early
            apply_files(project, report.files, backup)
            record_lines = migrate_records(project, backup, report)
            swap_machinery(project, backup)
            plan.apply()
            if not backup.used:
                report.backup = None
    report.lines = summary(report, notes, plan.lines, record_lines)
    return report


# ----------------------------------------------------------------- versions

def target_version(template: Path) -> str:
    """The template's VERSION; a template without one (before 0.2.0) is expflow's own version."""
    version = template_version(template)
    if version is not None:
        return version
    from expflow import __version__

    return __version__


def check_versions(report: UpdateReport, template: Path) -> bool:
    """True when there is nothing to do; an error when the project is newer than expflow."""
    old, new = (migrations.parse_version(v) for v in (report.from_version, report.to_version))
    if old == new:
        report.lines.append(f"[OK] {report.project} is already at expflow {report.to_version}; nothing to do")
        return True
    if old > new:
        raise UpdateError(f"{report.project} was generated by expflow {report.from_version}, newer than this "
                          f"expflow's template ({report.to_version}): upgrade expflow instead")
    if template_version(template) is None:
        raise UpdateError(f"the template {template} has no {RUNTIME_DIR}/{VERSION_FILE}: it cannot update projects")
    return False


# ----------------------------------------------------------------- git

def git_changes(project: Path) -> list[str] | None:
    """`git status --porcelain` lines of the project's folder; None when it is not
    in a git work tree. --no-optional-locks: a dry run must not even refresh the index."""
    git = shutil.which("git")
    if git is None:
        return None
    inside = subprocess.run([git, "rev-parse", "--is-inside-work-tree"], cwd=project, capture_output=True,
                            text=True, timeout=60)
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    status = subprocess.run([git, "--no-optional-locks", "status", "--porcelain", "--", "."], cwd=project,
                            capture_output=True, text=True, timeout=60)
    if status.returncode != 0:
        raise UpdateError(f"git status failed in {project}: {status.stderr.strip()}")
    return [line for line in status.stdout.splitlines() if line.strip()]


def check_clean(project: Path, force: bool, dry_run: bool) -> list[str]:
    """Refuse a git project with uncommitted changes (unless force); a dry run only warns."""
    changes = git_changes(project)
    if not changes or force:
        return []
    shown = ", ".join(line[3:] for line in changes[:3]) + (", ..." if len(changes) > 3 else "")
    if dry_run:
        return [f"WARNING: uncommitted changes ({shown}); the update itself needs them committed or --force"]
    raise UpdateError(f"{project} has uncommitted changes ({shown}): commit them first, so that the update "
                      "can be reviewed and undone with git, or pass --force")


# ----------------------------------------------------------------- the three versions

def old_release(project: Path, version: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """(answers, user-owned files as generated) of the release the project is at."""
    if version in LEGACY_VERSIONS:
        answers = infer_answers_0_1_0(project, legacy_defaults(version))
        return answers, render_legacy(version, answers)
    return read_answers(project), read_pristine(project)


def render_template(template: Path, answers: dict[str, str], output: Path, version: str) -> Path:
    """The new release rendered with the project's answers, taken literally (template.render)."""
    try:
        created = render_literally(template, answers, output)
    except TemplateError as exc:
        raise TemplateError(f"could not render {template} with the project's answers: {exc}") from exc
    remove_pycache(created)
    rendered = (created / RUNTIME_DIR / VERSION_FILE).read_text().strip()
    if rendered != version:
        raise TemplateError(f"{template} rendered {RUNTIME_DIR}/{VERSION_FILE} {rendered!r}, expected {version!r}")
    return created


# ----------------------------------------------------------------- user-owned files

def plan_files(project: Path, base: dict[str, bytes], theirs: dict[str, Path],
               steps: list[migrations.CodemodStep], report: UpdateReport) -> list[FileAction]:
    actions = []
    for relpath in sorted(set(base) | set(theirs)):
        path = project / relpath
        ours = path.read_bytes() if path.is_file() else None
        old = migrations.apply_codemods(relpath, base[relpath], steps) if relpath in base else None
        new = theirs[relpath].read_bytes() if relpath in theirs else None
        mode = file_mode(path) if ours is not None else file_mode(theirs[relpath]) if relpath in theirs else 0o644
        action = plan_file(relpath, ours, old, new, steps, report)
        if action is not None:
            action.mode = mode
            actions.append(action)
            actions += stale_warnings(action, steps, report.to_version)
    return actions


def plan_file(relpath: str, ours: bytes | None, old: bytes | None, new: bytes | None,
              steps: list[migrations.CodemodStep], report: UpdateReport) -> FileAction | None:
    """ours: the user's file (None: absent); old: the base (codemods applied);
    new: the new release's (None: the release dropped it)."""
    before, after = report.from_version, report.to_version
    if ours is None:
        if old is None and new is not None:
            return FileAction(relpath, CREATED, f"created (new in {after})", new)
        if old is not None and new is not None and new != old:
            return FileAction(relpath, DELETED, f"left deleted (you deleted it; {after} changed it: see "
                                                f"{RUNTIME_DIR}/pristine/{relpath})", warning=True)
        return None if new is None else FileAction(relpath, DELETED, "left deleted (you deleted it)")
    mine = migrations.apply_codemods(relpath, ours, steps)
    if new is None:
        assert old is not None
        if mine == old:
            return FileAction(relpath, REMOVED, f"removed (unchanged since {before})")
        return FileAction(relpath, OBSOLETE, f"kept (you changed it; {after} no longer uses it)", warning=True)
    result = merge.merge_file(mine, old if old is not None else b"", new, before, after)
    outcome = merge.UPDATED if result.outcome == merge.UNCHANGED and mine != ours else result.outcome
    return FileAction(relpath, outcome, merge_message(result, mine != ours, after), result.content,
                      warning=result.outcome == merge.CONFLICT)


def merge_message(result: merge.Merge, codemodded: bool, version: str) -> str:
    if result.outcome == merge.CONFLICT:
        plural = "s" if result.conflicts != 1 else ""
        return f"both changed; conflict markers left in the file ({result.conflicts} conflict{plural})"
    if result.outcome == merge.UNCHANGED:
        return "updated" if codemodded else "unchanged"
    if result.outcome == merge.KEPT:
        return "kept your version" + (f", with {version}'s mechanical changes (codemods)" if codemodded else "")
    return {merge.UPDATED: "updated", merge.MERGED: "merged your changes"}[result.outcome]


def stale_warnings(action: FileAction, steps: list[migrations.CodemodStep], version: str) -> list[FileAction]:
    if action.content is None:
        return []
    stale = migrations.stale_references(action.path, action.content, steps)
    return [FileAction(action.path, STALE, f"still refers to {old}, which {version} no longer has: "
                                             f"use {new}", warning=True) for old, new in stale.items()]


def apply_files(project: Path, actions: list[FileAction], backup: Backup) -> None:
    for action in actions:
        path = project / action.path
        if action.outcome == REMOVED:
            backup.copy(action.path)
            path.unlink()
        elif action.outcome in WRITES and action.content is not None:
            if path.is_file() and path.read_bytes() == action.content:
                continue
            backup.copy(action.path)
            atomic_write_bytes(path, action.content, action.mode)


# The harvest's caches under .expflow/ (expflow_runtime/index.py, rowcache.py)
HARVEST_CACHES = ("harvest.*", "*.rows")


def migrate_records(project: Path, backup: Backup | None, report: UpdateReport) -> list[str]:
    """Run each record migration between the two versions (backup None: a dry
    run); report.records gets the records changed, the lines say which. When
    any changed, the harvest's caches go: the index sees the runtime's own
    writes through each experiment's directory, not a migration's."""
    lines = []
    for step in migrations.record_steps(report.from_version, report.to_version):
        records = step.migrate(project, backup)
        count = f"{len(records)} record{'s' if len(records) != 1 else ''} changed" if records else "nothing to change"
        lines.append(f"[OK] records {step.from_version} -> {step.to_version} ({step.description}): {count}")
        lines += [f"[OK] {relpath}: migrated" for relpath in records]
        report.records += records
    if report.records and backup is not None:
        for pattern in HARVEST_CACHES:
            for cache in (project / ".expflow").glob(pattern):
                cache.unlink()
    return lines


# ----------------------------------------------------------------- report

def summary(report: UpdateReport, notes: list[str], machinery: list[str], records: list[str]) -> list[str]:
    """The lines to print: one per file, the machinery, the records, backups, conflicts."""
    dry = "Dry run, nothing written: " if report.dry_run else ""
    lines = [f"{dry}{report.project}: expflow {report.from_version} -> {report.to_version}", *notes]
    lines += [action.line() for action in report.files]
    lines += [*machinery, *records]
    if report.backup:
        lines.append(f"[OK] backups of every file changed or removed: {report.backup}/")
    if report.conflicts:
        lines.append(f"WARNING: conflict markers in {', '.join(report.conflicts)}: resolve them "
                     "(look for <<<<<<<), then commit")
    lines.append("Dry run: nothing written." if report.dry_run else
                 f"[OK] {report.project} is now at expflow {report.to_version}")
    return lines
