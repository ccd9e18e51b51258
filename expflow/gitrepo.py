"""The project and git: every run records the commit and diff of the repository
the project is in (expflow_runtime/submit.py git_snapshot), so a project in no
repository records nothing, and one inside another repository (a checkout of
expflow, a home directory under git) records that repository's."""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT_TIMEOUT = 30


def git(project: Path, *args: str) -> subprocess.CompletedProcess | None:
    """git -C project args; None when git is not installed or hangs."""
    try:
        return subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


def enclosing_repository(project: Path) -> Path | None:
    """The top of the git repository project lies in, or None."""
    result = git(project, "rev-parse", "--show-toplevel")
    if result is None or result.returncode != 0 or not result.stdout.strip():
        return None
    return Path(result.stdout.strip())


def init_repository(project: Path) -> str:
    """git init, add and a first commit; what happened, as one line. A commit
    that git refuses (no user.name or user.email) leaves the repository without one."""
    for args in (("init", "-q"), ("add", "-A")):
        result = git(project, *args)
        if result is None or result.returncode != 0:
            return f"WARNING: git {args[0]} failed: {(result.stderr.strip() if result else 'git not found')}"
    result = git(project, "commit", "-q", "-m", "expflow scaffold")
    if result is None or result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["?"])[-1] if result else "git not found"
        return f"WARNING: git init done, but the first commit failed ({why}): commit yourself"
    return f"[OK] git repository created in {project} with a first commit: each run records its commit"


def location_note(project: Path) -> str:
    """What a project's place means for what its runs record, or "" when it is the
    top of its own repository."""
    top = enclosing_repository(project)
    if top is None:
        return (f"NOTE: {project} is not under git: runs record no commit and no diff of your code. "
                f"To record them: cd {project} && git init && git add -A && git commit -m start")
    if top.resolve() != project.resolve():
        return (f"WARNING: {project} is inside the git repository {top}: every run records that repository's "
                "commit and diff, not this project's. Move the project out of it, or make it a repository of its own")
    return ""
