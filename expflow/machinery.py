"""The machinery folder, expflow_runtime/: its version, and its replacement by
`expflow update`, which swaps a complete new folder in by two renames.

For a 0.1.0 project it also retires the machinery that lived in scripts/ and
leaves shims at the two paths that jobs submitted before the update still call.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from expflow import migrations
from expflow.answers import RUNTIME_DIR, record_scaffold
from expflow.errors import UpdateError
from expflow.fileops import Backup, atomic_write_bytes, remove_pycache
from expflow.legacy_template import LEGACY_VERSIONS, SHIMS, machinery_hashes, sha256, shim

PROJECT_DIR = "{{cookiecutter.project_slug}}"
VERSION_FILE = "VERSION"
STAGING = ".expflow_runtime-new"  # the new machinery, complete before it is swapped in
RETIRED = ".expflow_runtime-old"  # the old machinery between the two renames of the swap


def project_version(project: Path) -> str:
    """expflow_runtime/VERSION; a 0.1.0 project has none, but its scripts/experiment.py."""
    version_file = project / RUNTIME_DIR / VERSION_FILE
    if version_file.is_file():
        version = version_file.read_text().strip()
        migrations.parse_version(version)
        return version
    if (project / RUNTIME_DIR).exists():
        raise UpdateError(f"{version_file} is missing: cannot tell which expflow generated {project}")
    if (project / "scripts" / "experiment.py").is_file() and (project / "settings.env").is_file():
        return "0.1.0"
    raise UpdateError(f"{project} is not an expflow project (no {RUNTIME_DIR}/{VERSION_FILE}, "
                      "no settings.env with scripts/experiment.py)")


def template_version(template: Path) -> str | None:
    path = template / PROJECT_DIR / RUNTIME_DIR / VERSION_FILE
    return path.read_text().strip() if path.is_file() else None


def stage_machinery(project: Path, render: Path, answers: dict[str, str], template: Path) -> None:
    """The new expflow_runtime/, complete with its answers and pristine copies,
    written beside the old one before the swap."""
    staging = project / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(render / RUNTIME_DIR, staging)
    record_scaffold(project, answers, template=template, runtime_dir=staging, rendered=render)


def swap_machinery(project: Path, backup: Backup) -> None:
    """Two renames: the old folder aside, the new one in. An interruption between
    them is undone by the next update (recover_interrupted_swap)."""
    runtime = project / RUNTIME_DIR
    if runtime.exists():
        os.replace(runtime, project / RETIRED)
    os.replace(project / STAGING, runtime)
    if (project / RETIRED).exists():
        os.replace(project / RETIRED, backup.target(RUNTIME_DIR))


def recover_interrupted_swap(project: Path, dry_run: bool) -> list[str]:
    runtime, retired, staging = project / RUNTIME_DIR, project / RETIRED, project / STAGING
    lines = []
    if retired.exists() and not runtime.exists():
        if dry_run:
            raise UpdateError(f"an interrupted update left {RETIRED} in {project}: run expflow update without "
                              "--dry-run to restore it first")
        os.replace(retired, runtime)
        lines.append(f"WARNING: an interrupted update had set {RUNTIME_DIR}/ aside; restored it")
    elif retired.exists() and not dry_run:
        shutil.rmtree(retired)  # the swap had finished: this is the superseded machinery
    if staging.exists() and not dry_run:
        shutil.rmtree(staging)
    return lines


@dataclass
class MachineryPlan:
    """For a 0.1.0 project: its machinery files in scripts/, which the update
    removes (unchanged) or moves to the backup (changed), and the shims it
    leaves at the two paths that jobs submitted before the update still call."""

    project: Path
    version: str
    new_version: str
    backup: Backup
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changed: dict[str, bool] = {}
        if (self.project / RUNTIME_DIR).is_dir():
            self.lines.append(f"[OK] {RUNTIME_DIR}/: replaced by {self.new_version}'s (the old one goes to "
                              f"{self.backup.relative()}/{RUNTIME_DIR})")
        else:
            self.lines.append(f"[OK] {RUNTIME_DIR}/: created ({self.new_version}'s machinery)")
        if self.version not in LEGACY_VERSIONS:
            return
        for relpath, digest in machinery_hashes(self.version).items():
            path = self.project / relpath
            shim_note = "; a shim takes its place" if relpath in SHIMS else ""
            if path.is_file():
                self.changed[relpath] = sha256(path.read_bytes()) != digest
                where = (self.backup.root / relpath).relative_to(self.project).as_posix()
                self.lines.append(
                    f"WARNING: {relpath}: you changed it; moved to {where} (expflow now runs {RUNTIME_DIR}/)"
                    f"{shim_note}" if self.changed[relpath] else
                    f"[OK] {relpath}: removed (now in {RUNTIME_DIR}/){shim_note}")
        self.lines += [f"[OK] {', '.join(SHIMS)}: shims that pass the calls of jobs submitted before the update on to "
                       f"{RUNTIME_DIR}/; delete them when none of those jobs is queued or running"]

    def apply(self) -> None:
        for relpath, changed in self.changed.items():
            if changed:
                self.backup.move(relpath)
            else:
                (self.project / relpath).unlink()
        if self.changed:
            remove_pycache(self.project / "scripts")
        if self.version in LEGACY_VERSIONS:
            for relpath in SHIMS:
                atomic_write_bytes(self.project / relpath, shim(relpath), 0o755 if relpath.endswith(".py") else 0o644)
