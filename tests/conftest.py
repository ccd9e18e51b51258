"""Shared fixtures: an isolated environment, a `bake` fixture that scaffolds a
project through the same public API users call, and access to the project's
own SLURM test cluster (tests/cluster/start.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from expflow import build_context, scaffold  # noqa: E402
from expflow.runtime import template_dir  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TEMPLATE_PROJECT = template_dir() / "{{cookiecutter.project_slug}}"


def read_data(name: str) -> str:
    return (DATA / "slurm" / name).read_text()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME and XDG_* in a temp dir (nothing may be written there); no
    SLURM_/SBATCH_ variables leaking in from a job the tests might run inside."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    for name in list(os.environ):
        if name.startswith(("SLURM_", "SBATCH_", "SQUEUE_", "SACCT_")) or name in ("SCRATCH", "CONDA_EXE"):
            monkeypatch.delenv(name)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder for fake SLURM commands (test_detect.torch_commands), alone on PATH with the system's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


@pytest.fixture
def bake(tmp_path: Path):
    """bake(name="demo", facts=None, **overrides) -> Path of a rendered project."""

    def _bake(name: str = "demo", facts=None, output_dir: Path | None = None, **overrides: str) -> Path:
        context = build_context(name, facts, overrides)
        return scaffold(context, output_dir or tmp_path)

    return _bake


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, user: str | None = None,
        check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command as a user would; as `user` through runuser when given."""
    if user:
        env_args = [f"{k}={v}" for k, v in (env or {}).items()]
        argv = ["runuser", "-u", user, "--", "env", *env_args, *argv]
        env = None
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})} if env else None,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def make(project: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return run(["make", "--no-print-directory", *args], cwd=project, **kwargs)


def status_rows(project: Path, **kwargs) -> dict[tuple[str, str], dict[str, str]]:
    """`make status` parsed: {(exp, stage): {column: value}}; COLUMNS wide enough for all,
    every row (ALL=1); the line of counts above the table is left out."""
    out = make(project, "status", env={**kwargs.pop("env", {}), "COLUMNS": "400", "ALL": "1"}, **kwargs).stdout
    lines = [line for line in out.splitlines() if line.strip()]
    start = next((n for n, line in enumerate(lines) if line.startswith("EXP ")), None)
    if start is None:  # "no experiments yet"
        return {}
    lines = lines[start:]
    header = lines[0].split()
    starts = [lines[0].index(name) for name in header]
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        row = dict(zip(header, cells))
        rows[(row["EXP"], row["STAGE"])] = row
    return rows


def metadata(project: Path, exp: str) -> dict:
    """An experiment's metadata with its jobs, as the runtime reads them (the
    journal in experiments/<id>/jobs/ and, from older projects, metadata.json)."""
    from expflow.runtime import module

    return module("ledger").metadata(str(project / "experiments" / exp))


def wait_for(predicate, timeout: float = 90, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ----------------------------------------------------------------- the SLURM test cluster

def cluster_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    return subprocess.run(["bash", str(REPO / "tests" / "cluster" / "check.sh")],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """The project's own cluster (tests/cluster/start.sh). Off CI a missing
    cluster skips the test; with CI=true it fails it: CI must run them."""
    if not cluster_up():
        message = "SLURM test cluster is not running: sudo bash tests/cluster/start.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield
