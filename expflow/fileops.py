"""File operations that `expflow update` and scaffold share: atomic writes,
backups of what an update changes, and the snapshot of a rendered tree.

Every write is a temp file in the same directory plus os.replace, so a reader
(or an interrupted update) sees the old file or the new one, never half.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

SKIPPED_DIRS = ("__pycache__",)


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write data to path through a temp file and os.replace; mode: the file's
    permission bits (default: those of the file replaced, else 0o644)."""
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def remove_pycache(root: Path) -> None:
    """Remove every __pycache__ directory under root: bytecode is a cache, and
    importing the template's scripts from a source checkout leaves some there."""
    for cache in sorted(root.rglob("__pycache__"), reverse=True):
        if cache.is_dir() and not cache.is_symlink():
            shutil.rmtree(cache)


def tree_files(root: Path, skip_top: tuple[str, ...] = ()) -> dict[str, Path]:
    """{posix relpath: path} of the regular files under root, without
    __pycache__ directories and without the top-level entries named in skip_top."""
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        top = here == root
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not (top and d in skip_top))
        for name in sorted(filenames):
            if top and name in skip_top:
                continue
            path = here / name
            if path.is_file():
                files[path.relative_to(root).as_posix()] = path
    return files


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


class Backup:
    """One update's backup folder, .expflow/backup-<timestamp>/, created on the
    first file saved in it. Each file keeps its path relative to the project."""

    def __init__(self, project: Path, stamp: str) -> None:
        self.project = project
        self.root = project / ".expflow" / f"backup-{stamp}"
        suffix = 2
        while self.root.exists():
            self.root = project / ".expflow" / f"backup-{stamp}-{suffix}"
            suffix += 1
        self.used = False

    def relative(self) -> str:
        return self.root.relative_to(self.project).as_posix()

    def target(self, relpath: str) -> Path:
        self.used = True
        target = self.root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def copy(self, relpath: str) -> None:
        """Copy the project's file relpath into the backup (once: the first copy is the original)."""
        source = self.project / relpath
        target = self.root / relpath
        if source.is_file() and not target.exists():
            shutil.copy2(source, self.target(relpath))

    def move(self, relpath: str) -> str:
        """Move the project's relpath (a file or folder) into the backup; its new relpath."""
        os.replace(self.project / relpath, self.target(relpath))
        return (self.root / relpath).relative_to(self.project).as_posix()
