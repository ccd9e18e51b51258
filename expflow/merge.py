"""Three-way merge of one file: the user's version, the version the project was
generated with (the base) and the new release's version.

The decision is a pure function of the three contents; only a real merge (both
sides changed) runs `git merge-file`, on temp files, writing nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from expflow.errors import UpdateError

# What happened to a file, from the user's point of view.
UNCHANGED = "unchanged"  # yours already equals the new version
UPDATED = "updated"  # you had not changed it: the new version replaces it
KEPT = "kept"  # the new release did not change it: yours stays
MERGED = "merged"  # both changed it, in different places: both changes are in
CONFLICT = "conflict"  # both changed the same lines: markers left in the file

GIT_TIMEOUT = 60


@dataclass(frozen=True)
class Merge:
    outcome: str  # one of the constants above
    content: bytes
    conflicts: int = 0


def merge_file(ours: bytes, base: bytes, theirs: bytes, old_label: str, new_label: str) -> Merge:
    """Merge the release's change (base -> theirs) into the user's file (ours)."""
    if ours == theirs:
        return Merge(UNCHANGED, ours)
    if ours == base:
        return Merge(UPDATED, theirs)
    if theirs == base:
        return Merge(KEPT, ours)
    content, conflicts = git_merge_file(ours, base, theirs, ("yours", old_label, new_label))
    return Merge(CONFLICT if conflicts else MERGED, content, conflicts)


def git_merge_file(ours: bytes, base: bytes, theirs: bytes, labels: tuple[str, str, str]) -> tuple[bytes, int]:
    """`git merge-file -p --diff3` of the three contents: (result, number of conflicts).
    Conflicts are left as <<<<<<< yours / ||||||| old / ======= / >>>>>>> new markers."""
    git = shutil.which("git")
    if git is None:
        raise UpdateError("expflow update needs git (for git merge-file) to merge your changes; install git")
    with tempfile.TemporaryDirectory(prefix="expflow-merge-") as tmp:
        paths = []
        for name, content in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_bytes(content)
            paths.append(str(path))
        label_args = [arg for label in labels for arg in ("-L", label)]
        try:
            proc = subprocess.run([git, "merge-file", "-p", "--diff3", *label_args, *paths],
                                  capture_output=True, timeout=GIT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UpdateError(f"git merge-file failed: {exc}") from exc
    # The exit status is the number of conflicts (at most 127); negative (255 here) on error.
    if proc.returncode > 127:
        message = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise UpdateError(f"git merge-file failed: {message}")
    return proc.stdout, proc.returncode
