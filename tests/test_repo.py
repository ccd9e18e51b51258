"""Promises about the repository itself: lint, types, docs that cover every
command and target, no emojis, and a wheel that works outside the checkout."""

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import REPO, make, run

from expflow import __version__
from expflow.cli import build_parser
from expflow.context import settable_keys

EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0F\u2705\u274C\u2714\u2716]")


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    return [REPO / name for name in out.splitlines() if (REPO / name).is_file()]


def test_ruff_and_mypy_are_clean():
    run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO)
    run([sys.executable, "-m", "mypy"], cwd=REPO)


def test_cluster_scripts_are_shellcheck_clean():
    scripts = sorted(str(p) for p in (REPO / "tests" / "cluster").glob("*.sh"))
    result = run([shutil.which("shellcheck") or "shellcheck", "-x", *scripts], cwd=REPO / "tests" / "cluster",
                 check=False)
    assert result.returncode == 0, result.stdout


def test_no_emojis_in_the_repo_or_a_generated_project(bake):
    project = bake()
    files = tracked_files() + [p for p in project.rglob("*") if p.is_file()]
    offenders = []
    for path in files:
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{path}:{n}" for n, line in enumerate(text.splitlines(), 1) if EMOJI.search(line)]
    assert offenders == []


def test_reference_documents_every_command_target_and_setting(bake):
    reference = (REPO / "docs" / "reference.md").read_text()
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for command in commands:
        assert f"`expflow {command}" in reference, command
    project = bake()
    targets = re.findall(r"^([a-z][a-z-]*):", (project / "Makefile").read_text(), re.M)
    for target in targets:
        assert re.search(rf"^\| `{target}`", reference, re.M), target
    for key in settable_keys():
        assert f"`{key}`" in reference, key
    settings = re.findall(r"^([A-Z_]+)=", (project / "settings.env").read_text(), re.M)
    for setting in settings:
        assert f"`{setting}`" in reference, setting


def test_readme_shows_the_real_make_help(bake):
    readme = (REPO / "README.md").read_text()
    shown = readme.split("```\n$ make\n", 1)[1].split("```", 1)[0]
    assert shown == make(bake(), "help").stdout


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```\n(.*?)\n```", section, re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert commands[1] in (REPO / ".ci" / "run").read_text()



def test_the_distribution_is_expflow_hpc_and_every_install_line_installs_this_checkout():
    """`pip install expflow` installs an unrelated package from PyPI: the
    distribution is expflow-hpc, and every pip line in the docs installs from here."""
    assert re.search(r'^name = "expflow-hpc"$', (REPO / "pyproject.toml").read_text(), re.M)
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    lines = [line for path in docs for block in re.findall(r"```\n(.*?)```", path.read_text(), re.S)
             for line in block.splitlines() if "pip install" in line]
    assert lines
    for line in lines:
        for command in re.findall(r"pip install ([^&#]*)", line):
            assert command.split()[-1] in (".", "'.[test]'"), line

@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_scaffolds_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], cwd=tmp_path, timeout=300)
    wheel = next(dist.glob("expflow_hpc-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path, timeout=300)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run([str(env_dir / "bin" / "expflow"), "scaffold", "fromwheel", "--no-input", "--no-detect"], cwd=outside)
    project = outside / "fromwheel"
    assert (project / "expflow_runtime" / "slurmkit.py").is_file()
    # expflow info loads the runtime's libraries from the installed template: still no bytecode in projects
    run([str(env_dir / "bin" / "expflow"), "info"], cwd=outside)
    run([str(env_dir / "bin" / "expflow"), "scaffold", "second", "--no-input", "--no-detect"], cwd=outside)
    assert not [p for p in (outside / "second").rglob("__pycache__")]
    assert run(["make", "-s", "help"], cwd=project).stdout.startswith("Usage: make TARGET")
    version = run([str(python), "-m", "expflow", "--version"], cwd=outside).stdout.strip()
    assert version == f"expflow {__version__}"
    assert "complete -F _expflow_complete expflow" in run(
        [str(env_dir / "bin" / "expflow"), "completion", "bash"], cwd=outside).stdout


def test_runtime_version_is_the_package_version():
    """expflow update reads the target release from the template's VERSION."""
    version = (REPO / "cookiecutter-template" / "{{cookiecutter.project_slug}}" / "expflow_runtime" / "VERSION")
    assert version.read_text() == f"{__version__}\n"
