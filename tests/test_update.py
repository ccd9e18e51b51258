"""`expflow update`: the merge of one file, codemods, the version steps, record
migrations, and whole updates of real 0.1.0 projects (rendered from
tests/data/legacy/, the 0.1.0 template) to synthetic newer templates built here,
so that these tests do not depend on the bundled template's progress."""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import DATA, REPO, TEMPLATE_PROJECT, make, run
from cookiecutter.main import cookiecutter
from legacy_data import legacy_json, tarball_files

import expflow
import expflow.runtime
import expflow.template
from expflow import merge, migrations
from expflow.answers import infer_answers_0_1_0, read_settings
from expflow.cli import main
from expflow.errors import UpdateError
from expflow.fileops import Backup
from expflow.legacy_template import LEGACY_DIR, SHIMS_DIR, legacy_defaults, render_legacy
from expflow.template import scaffold
from expflow.update import project_version, update_project

PROJECT = "{{cookiecutter.project_slug}}"
TARBALL = DATA / "legacy" / "expflow-0.1.0-template.tar.gz"
MACHINERY_0_1 = ["compare", "experiment", "harvest", "jobrecord", "projectlib", "report", "resources", "slurmkit",
                 "sweep", "tables"]
ANSWERS = {"project_name": "demo", "project_slug": "demo", "time": "02:00:00", "partition": "cs",
           "backend": "local", "detected_summary": "cluster greene, detected 2025-01-02"}

# The 0.2.0 contract, written out here independently of expflow/migrations.py.
MAKEFILE_0_2 = [
    ("EXPERIMENT := $(PYTHON) -I scripts/experiment.py\nHARVEST := $(PYTHON) -I scripts/harvest.py\n"
     "RESOURCES := $(PYTHON) -I scripts/resources.py\nREPORT := $(PYTHON) -I scripts/report.py\n",
     "# The machinery lives in expflow_runtime/ (replaced by expflow update); it takes Ctrl-C once it can "
     "stop cleanly.\nRUN := trap '' INT; exec $(PYTHON) -I expflow_runtime/run.py\n"),
    *((f"\t@$(EXPERIMENT) {c}\n", f"\t@$(RUN) {c}\n") for c in
      ("new", "train", "eval", "resume", "list", "logs", "tail", "cancel", "archive")),
    ("\t@$(RESOURCES) show\n", "\t@$(RUN) resources\n"),
    ("\t@$(RESOURCES) check\n", "\t@$(RUN) check\n"),
    *((f"\t@$(HARVEST) {c}\n", f"\t@$(RUN) {c}\n") for c in ("status", "results", "best")),
    ("\t@$(PYTHON) -I scripts/sweep.py sweep\n", "\t@$(RUN) sweep\n"),
    ("\t@$(PYTHON) -I scripts/sweep.py retry\n", "\t@$(RUN) sweep-retry\n"),
    ("\t@$(PYTHON) -I scripts/compare.py compare\n", "\t@$(RUN) compare\n"),
    ("\t@$(REPORT) report\n", "\t@$(RUN) report\n"),
    ("\t@$(PYTHON) scripts/report.py plot\n", "\t@$(PYTHON) expflow_runtime/run.py plot\n"),
]
SBATCH_0_2 = [("  # shellcheck source=scripts/job-lib.sh\n", "  # shellcheck source=expflow_runtime/job-lib.sh\n"),
              ("  source scripts/job-lib.sh\n", "  source expflow_runtime/job-lib.sh\n")]
DOCTOR = "\n.PHONY: doctor\ndoctor: ## Check the project's set-up\n\t@$(RUN) doctor\n"
RUN_STUB = """import json
import sys

print(json.dumps({"argv": sys.argv[1:], "isolated": sys.flags.isolated}))
"""
JOB_LIB_STUB = '# shellcheck shell=bash\nrun_stage() {\n  echo "new run_stage $*"\n}\n'


# ----------------------------------------------------------------- templates and projects

def released_template(version: str, root: Path) -> Path:
    """A release's template as it shipped, from tests/data/legacy/ (`git archive
    <its commit> cookiecutter-template`), extracted under root."""
    with tarfile.open(DATA / "legacy" / f"expflow-{version}-template.tar.gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:
            tar.extractall(root)  # noqa: S202 (our own archive)
    return root / "cookiecutter-template"


@pytest.fixture(scope="session")
def legacy_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0.1.0 template (commit c8809da)."""
    return released_template("0.1.0", tmp_path_factory.mktemp("legacy"))


def replace_all(path: Path, replacements) -> None:
    text = path.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)


def make_template_0_2(legacy: Path, target: Path) -> Path:
    """A synthetic 0.2.0 template: 0.1.0's user-owned files following the codemods,
    plus release changes of its own (a Makefile target, README and settings.env
    lines), the machinery moved to expflow_runtime/ (stubs)."""
    shutil.copytree(legacy, target)
    project = target / PROJECT
    replace_all(project / "Makefile", MAKEFILE_0_2)
    with open(project / "Makefile", "a") as handle:
        handle.write(DOCTOR)
    for name in ("train", "eval"):
        replace_all(project / "scripts" / f"{name}.sbatch", SBATCH_0_2)
    with open(project / "README.md", "a") as handle:
        handle.write("\n## Updating\n\n`expflow update` brings this project to a newer expflow.\n")
    replace_all(project / "settings.env", [("\nPROJECT_NAME=", "\n# Since 0.2.0: expflow update keeps your edits.\n"
                                                              "PROJECT_NAME=")])
    for path in (project / "scripts").iterdir():
        if path.suffix == ".py" or path.name in ("job-lib.sh", "sweep.sbatch"):
            path.unlink()
    runtime = project / "expflow_runtime"
    runtime.mkdir()
    (runtime / "VERSION").write_text("0.2.0\n")
    (runtime / "run.py").write_text(RUN_STUB)
    (runtime / "job-lib.sh").write_text(JOB_LIB_STUB)
    (runtime / "sweep-task.sbatch").write_text("#!/bin/bash\necho sweep task\n")
    config = json.loads((target / "cookiecutter.json").read_text())
    config["_copy_without_render"].append("expflow_runtime/*")
    (target / "cookiecutter.json").write_text(json.dumps(config, indent=2))
    return target


def make_template_0_3(template_0_2: Path, target: Path) -> Path:
    """0.3.0: drops eval.py and configs/sweep-example.yaml, adds configs/new.yaml,
    changes configs/default.yaml and README.md's first paragraph."""
    shutil.copytree(template_0_2, target)
    project = target / PROJECT
    (project / "eval.py").unlink()
    (project / "configs" / "sweep-example.yaml").unlink()
    (project / "configs" / "new.yaml").write_text("lr: 0.1\n")
    with open(project / "configs" / "default.yaml", "a") as handle:
        handle.write("# added in 0.3.0\n")
    replace_all(project / "README.md", [("generated by\nexpflow.", "generated by\nexpflow 0.3.0.")])
    (project / "expflow_runtime" / "VERSION").write_text("0.3.0\n")
    return target


def make_template_0_4(template_0_3: Path, target: Path) -> Path:
    """0.4.0: 0.3.0's files under a new VERSION (what a release of runtime changes alone is)."""
    shutil.copytree(template_0_3, target)
    (target / PROJECT / "expflow_runtime" / "VERSION").write_text("0.4.0\n")
    return target


@pytest.fixture(scope="session")
def template_0_2(legacy_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template_0_2(legacy_template, tmp_path_factory.mktemp("t02") / "template")


@pytest.fixture(scope="session")
def template_0_3(template_0_2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template_0_3(template_0_2, tmp_path_factory.mktemp("t03") / "template")


@pytest.fixture(scope="session")
def template_0_4(template_0_3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template_0_4(template_0_3, tmp_path_factory.mktemp("t04") / "template")


def git(project: Path, *args: str) -> str:
    return run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args], cwd=project).stdout


def commit_all(project: Path, message: str) -> None:
    if not (project / ".git").exists():
        git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", message)


def legacy_project(template: Path, where: Path, use_git: bool = True, **answers: str) -> Path:
    """A 0.1.0 project as 0.1.0's scaffold rendered it, committed to git."""
    project = Path(cookiecutter(str(template), no_input=True, extra_context={**ANSWERS, **answers},
                                output_dir=str(where), default_config=True))
    if use_git:
        commit_all(project, "generated by expflow 0.1.0")
    return project


def project_0_2(template: Path, where: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 0.2.0 project made by expflow's own scaffold from the synthetic template."""
    monkeypatch.setattr(expflow.template, "template_dir", lambda: template)
    return scaffold(dict(ANSWERS), where)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its bytes (files), mtime and mode."""
    state = {}
    for path in sorted([root, *root.rglob("*")]):
        stat = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        state[path.relative_to(root).as_posix()] = (content, stat.st_mtime_ns, stat.st_mode)
    return state


def edit(path: Path, old: str, new: str) -> None:
    replace_all(path, [(old, new)])


# ----------------------------------------------------------------- the merge of one file

def test_merge_takes_theirs_when_you_did_not_change_the_file():
    result = merge.merge_file(b"a\nb\n", b"a\nb\n", b"a\nB\n", "0.1.0", "0.2.0")
    assert (result.outcome, result.content) == (merge.UPDATED, b"a\nB\n")


def test_merge_keeps_yours_when_the_release_did_not_change_the_file():
    result = merge.merge_file(b"a\nmine\n", b"a\nb\n", b"a\nb\n", "0.1.0", "0.2.0")
    assert (result.outcome, result.content) == (merge.KEPT, b"a\nmine\n")
    assert merge.merge_file(b"x\n", b"a\n", b"x\n", "0.1.0", "0.2.0").outcome == merge.UNCHANGED


def test_merge_of_changes_in_different_places_has_both():
    base = b"".join(b"line %d\n" % i for i in range(10))
    ours = base.replace(b"line 1\n", b"line 1 (mine)\n")
    theirs = base.replace(b"line 8\n", b"line 8 (0.2.0)\n")
    result = merge.merge_file(ours, base, theirs, "0.1.0", "0.2.0")
    assert result.outcome == merge.MERGED
    assert result.content == base.replace(b"line 1\n", b"line 1 (mine)\n").replace(b"line 8\n", b"line 8 (0.2.0)\n")


def test_merge_of_the_same_lines_leaves_conflict_markers():
    result = merge.merge_file(b"a\nmine\nc\n", b"a\nb\nc\n", b"a\ntheirs\nc\n", "0.1.0", "0.2.0")
    assert (result.outcome, result.conflicts) == (merge.CONFLICT, 1)
    assert result.content == (b"a\n<<<<<<< yours\nmine\n||||||| 0.1.0\nb\n=======\ntheirs\n>>>>>>> 0.2.0\nc\n")


def test_merge_without_git_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UpdateError, match="needs git"):
        merge.merge_file(b"a\nmine\n", b"a\nb\n", b"a\ntheirs\n", "0.1.0", "0.2.0")


# ----------------------------------------------------------------- codemods

def test_codemods_turn_0_1_0_files_into_0_2_0_ones(legacy_template, template_0_2):
    old, new = legacy_template / PROJECT, template_0_2 / PROJECT
    steps = migrations.codemod_steps("0.1.0", "0.2.0")
    makefile = migrations.apply_codemods("Makefile", (old / "Makefile").read_bytes(), steps)
    assert makefile + DOCTOR.encode() == (new / "Makefile").read_bytes()
    for name in ("scripts/train.sbatch", "scripts/eval.sbatch"):
        assert migrations.apply_codemods(name, (old / name).read_bytes(), steps) == (new / name).read_bytes()
    assert migrations.apply_codemods("train.py", b"scripts/x.py\n", steps) == b"scripts/x.py\n"
    assert migrations.codemod_steps("0.2.0", "0.2.0") == []


def test_codemods_keep_arguments_and_line_endings():
    text = "EXPERIMENT := $(PYTHON) -I scripts/experiment.py\r\nmine:\r\n\t-@$(HARVEST) results --x\r\n"
    assert migrations.makefile_0_2_0(text) == (
        "# The machinery lives in expflow_runtime/ (replaced by expflow update); it takes Ctrl-C once it can "
        "stop cleanly.\r\nRUN := trap '' INT; exec $(PYTHON) -I expflow_runtime/run.py\r\nmine:\r\n"
        "\t-@$(RUN) results --x\r\n")


def test_old_paths_the_codemods_cannot_reach_are_reported(legacy_template, template_0_2, tmp_path):
    project = legacy_project(legacy_template, tmp_path)
    edit(project / "Makefile", "\n.PHONY: new\n", "\nold:\n\tcd scripts && python3 -I scripts/harvest.py status\n"
                                                  "\n.PHONY: new\n")
    commit_all(project, "an old call")
    report = update_project(project, template=template_0_2)
    assert ("WARNING: Makefile: still refers to scripts/harvest.py, which 0.2.0 no longer has: use "
            "expflow_runtime/run.py") in report.lines


def test_a_codemod_lets_your_edit_next_to_a_rewritten_line_merge_cleanly(legacy_template, template_0_2):
    base = (legacy_template / PROJECT / "Makefile").read_bytes()
    theirs = (template_0_2 / PROJECT / "Makefile").read_bytes()
    anchor = b"REPORT := $(PYTHON) -I scripts/report.py\n"
    ours = base.replace(anchor, anchor + b"DATA_DIR ?= /data\n").replace(
        b"\t@$(EXPERIMENT) train\n", b"\t@echo training\n\t@$(EXPERIMENT) train\n")
    assert merge.merge_file(ours, base, theirs, "0.1.0", "0.2.0").outcome == merge.CONFLICT  # without codemods
    steps = migrations.codemod_steps("0.1.0", "0.2.0")
    result = merge.merge_file(migrations.apply_codemods("Makefile", ours, steps),
                              migrations.apply_codemods("Makefile", base, steps), theirs, "0.1.0", "0.2.0")
    assert result.outcome == merge.MERGED
    text = result.content.decode()
    assert "RUN := trap '' INT; exec $(PYTHON) -I expflow_runtime/run.py\nDATA_DIR ?= /data\n" in text
    assert "\t@echo training\n\t@$(RUN) train\n" in text and text.endswith(DOCTOR)


# ----------------------------------------------------------------- versions

def test_versions_0_1_0_same_newer_and_not_a_project(legacy_template, template_0_2, tmp_path, monkeypatch):
    old = legacy_project(legacy_template, tmp_path / "a", use_git=False)
    assert project_version(old) == "0.1.0"
    current = project_0_2(template_0_2, tmp_path / "b", monkeypatch)
    before = snapshot(current)
    report = update_project(current, template=template_0_2)
    assert report.up_to_date and report.lines == [f"[OK] {current} is already at expflow 0.2.0; nothing to do"]
    assert snapshot(current) == before
    (current / "expflow_runtime" / "VERSION").write_text("0.3.0\n")
    with pytest.raises(UpdateError, match="newer than this expflow"):
        update_project(current, template=template_0_2)
    (current / "expflow_runtime" / "VERSION").unlink()
    with pytest.raises(UpdateError, match="VERSION is missing"):
        update_project(current, template=template_0_2)
    with pytest.raises(UpdateError, match="not an expflow project"):
        update_project(tmp_path, template=template_0_2)


def test_a_template_without_version_is_expflow_s_own_version(legacy_template, tmp_path, monkeypatch):
    project = legacy_project(legacy_template, tmp_path, use_git=False)
    monkeypatch.setattr(expflow, "__version__", "0.1.0")
    assert update_project(project, template=legacy_template).up_to_date
    monkeypatch.setattr(expflow, "__version__", "0.2.0")
    with pytest.raises(UpdateError, match="cannot update projects"):
        update_project(project, template=legacy_template)


# ----------------------------------------------------------------- answers and the 0.1.0 data

def test_answers_of_a_0_1_0_project_are_read_back(legacy_template, tmp_path):
    answers = {"project_name": "My Demo", "backend": "slurm", "cluster": "greene", "account": "pr_123",
               "partition": "h200", "gpu_type": "h200", "gpus": "2", "time": "02:00:00", "mail_type": "END,FAIL",
               "env_modules": "python/3.11 cuda/12.1", "env_conda": "/scratch/o'brien/env",
               "detected_summary": "cluster greene (2 partitions), detected 2025-01-02"}
    project = Path(cookiecutter(str(legacy_template), no_input=True, extra_context=answers,
                                output_dir=str(tmp_path), default_config=True))
    defaults = legacy_defaults("0.1.0")
    inferred = infer_answers_0_1_0(project, defaults)
    expected = {k: v for k, v in defaults.items() if not k.startswith("_") and "{{" not in v}
    assert inferred == {**expected, **answers, "project_slug": "my-demo"}
    assert read_settings(project / "settings.env")["ENV_CONDA"] == "/scratch/o'brien/env"


def test_the_shipped_0_1_0_data_is_the_tarball_s_template(legacy_template, tmp_path):
    shipped = json.loads((LEGACY_DIR / "template-0.1.0.json").read_text())
    assert legacy_json("0.1.0", "c8809da", tarball_files(TARBALL.read_bytes())) == shipped
    assert sorted(shipped["machinery"]) == sorted([f"scripts/{n}.py" for n in MACHINERY_0_1] + ["scripts/job-lib.sh"])
    project = legacy_project(legacy_template, tmp_path, use_git=False)
    rendered = render_legacy("0.1.0", infer_answers_0_1_0(project, legacy_defaults("0.1.0")))
    assert rendered == {rel: (project / rel).read_bytes() for rel in shipped["files"]}


def test_scaffold_records_answers_and_pristine_files_and_leaves_no_bytecode(template_0_2, tmp_path, monkeypatch,
                                                                           bake):
    plain = bake()
    assert not list(plain.rglob("__pycache__"))
    if (plain / "expflow_runtime").is_dir():
        assert (plain / "expflow_runtime" / "answers.json").is_file()
    else:
        assert not (plain / "expflow_runtime").exists()
    (template_0_2 / PROJECT / "__pycache__").mkdir(exist_ok=True)
    try:
        project = project_0_2(template_0_2, tmp_path / "p", monkeypatch)
    finally:
        (template_0_2 / PROJECT / "__pycache__").rmdir()
    assert not list(project.rglob("__pycache__"))
    runtime = project / "expflow_runtime"
    answers = json.loads((runtime / "answers.json").read_text())
    assert answers["time"] == "02:00:00" and answers["cpus"] == "2" and answers["project_slug"] == "demo"
    assert not [key for key in answers if key.startswith("_")]
    pristine = {p.relative_to(runtime / "pristine").as_posix() for p in (runtime / "pristine").rglob("*")
                if p.is_file()}
    owned = {p.relative_to(project).as_posix() for p in project.rglob("*")
             if p.is_file() and "expflow_runtime" not in p.parts}
    assert pristine == owned and "scripts/train.sbatch" in owned
    assert all((runtime / "pristine" / rel).read_bytes() == (project / rel).read_bytes() for rel in owned)


# ----------------------------------------------------------------- whole updates

def test_update_of_a_0_1_0_project_keeps_edits_applies_codemods_and_leaves_shims(legacy_template, template_0_2,
                                                                                  tmp_path):
    project = legacy_project(legacy_template, tmp_path)
    edit(project / "Makefile", "\n.PHONY: new\n", "\n.PHONY: data\ndata: ## Fetch the data\n\t@./fetch-data.sh\n"
                                                  "\n.PHONY: new\n")
    edit(project / "scripts" / "train.sbatch", "python3 train.py", "python3 train.py --epochs 3")
    edit(project / "settings.env", "TIME='02:00:00'", "TIME='04:00:00'")
    edit(project / "settings.env", "PRIMARY_METRIC='val_acc'", "PRIMARY_METRIC='val_loss'")
    with open(project / "scripts" / "harvest.py", "a") as handle:
        handle.write("# my fix\n")
    (project / "scripts" / "__pycache__").mkdir()
    (project / "scripts" / "__pycache__" / "projectlib.cpython-311.pyc").write_bytes(b"x")
    commit_all(project, "my edits")
    record = project / "experiments" / "001" / "metadata.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"id": "001"}\n')

    report = update_project(project, template=template_0_2)

    outcomes = {a.path: a.outcome for a in report.files if a.outcome != "stale"}
    assert outcomes == {
        ".gitignore": "unchanged", "Makefile": "merged", "README.md": "updated", "configs/default.yaml": "unchanged",
        "configs/sweep-example.yaml": "unchanged", "eval.py": "unchanged", "scripts/eval.sbatch": "updated",
        "scripts/sweep.sbatch": "removed", "scripts/train.sbatch": "kept", "settings.env": "merged",
        "train.py": "unchanged"}
    assert report.conflicts == [] and not any(a.outcome == "stale" for a in report.files)
    makefile = (project / "Makefile").read_text()
    assert "RUN := trap '' INT; exec $(PYTHON) -I expflow_runtime/run.py" in makefile
    assert "\t@$(RUN) train\n" in makefile
    assert "\t@./fetch-data.sh\n" in makefile and DOCTOR in makefile and "scripts/" not in makefile
    train = (project / "scripts" / "train.sbatch").read_text()
    assert "python3 train.py --epochs 3" in train and "  source expflow_runtime/job-lib.sh\n" in train
    settings = (project / "settings.env").read_text()
    assert "TIME='04:00:00'" in settings and "PARTITION='cs'" in settings and "# Since 0.2.0" in settings
    assert "PRIMARY_METRIC='val_loss'" in settings
    assert "## Updating" in (project / "README.md").read_text()
    assert not (project / "scripts" / "sweep.sbatch").exists()
    assert sorted(p.name for p in (project / "scripts").iterdir()) == [
        "eval.sbatch", "job-lib.sh", "jobrecord.py", "train.sbatch"]
    assert (project / "scripts" / "job-lib.sh").read_bytes() == (SHIMS_DIR / "job-lib.sh").read_bytes()
    assert (project / "scripts" / "jobrecord.py").stat().st_mode & 0o111
    runtime = project / "expflow_runtime"
    assert (runtime / "VERSION").read_text() == "0.2.0\n" and (runtime / "run.py").read_text() == RUN_STUB
    assert json.loads((runtime / "answers.json").read_text())["time"] == "04:00:00"
    assert (runtime / "pristine" / "Makefile").read_bytes() == (template_0_2 / PROJECT / "Makefile").read_bytes()
    assert not (project / ".expflow_runtime-new").exists() and not (project / ".expflow_runtime-old").exists()
    assert (project / "scripts" / "train.sbatch").stat().st_mode & 0o111
    backup = project / report.backup
    assert (backup / "scripts" / "harvest.py").read_text().endswith("# my fix\n")
    assert (backup / "Makefile").read_bytes() == git(project, "show", "HEAD:Makefile").encode()
    assert record.read_text() == '{"id": "001"}\n'
    lines = "\n".join(report.lines)
    assert f"WARNING: scripts/harvest.py: you changed it; moved to {report.backup}/scripts/harvest.py" in lines
    assert "[OK] Makefile: merged your changes" in lines and "[OK] scripts/experiment.py: removed" in lines
    assert "[OK] scripts/sweep.sbatch: removed (unchanged since 0.1.0)" in lines
    assert make_help(project).startswith("Usage: make TARGET") and "doctor" in make_help(project)

    commit_all(project, "expflow update")
    before = snapshot(project)
    again = update_project(project, template=template_0_2)
    assert again.up_to_date and snapshot(project) == before


def make_help(project: Path) -> str:
    return run(["make", "-s", "--no-print-directory", "help"], cwd=project).stdout


def test_shims_pass_old_calls_on_to_expflow_runtime(legacy_template, template_0_2, tmp_path):
    project = legacy_project(legacy_template, tmp_path)
    update_project(project, template=template_0_2)
    out = run([sys.executable, "-I", str(project / "scripts" / "jobrecord.py"), "finish", "143", "TERM"],
              cwd=tmp_path).stdout
    assert json.loads(out) == {"argv": ["job-record", "finish", "143", "TERM"], "isolated": 1}
    out = run(["bash", "-c", "set -euo pipefail; source scripts/job-lib.sh; run_stage train experiments/001"],
              cwd=project).stdout
    assert out == "new run_stage train experiments/001\n"


def test_shims_are_shellcheck_clean_and_run_on_python_3_6():
    run([shutil.which("shellcheck") or "shellcheck", "-x", "job-lib.sh"], cwd=SHIMS_DIR)
    result = run([shutil.which("vermin") or "vermin", "-t=3.6-", "--no-tips", "--violations", "jobrecord.py"],
                 cwd=SHIMS_DIR, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_removed_created_deleted_and_conflicting_files_from_0_2_0_to_0_3_0(template_0_2, template_0_3, tmp_path,
                                                                          monkeypatch):
    project = project_0_2(template_0_2, tmp_path, monkeypatch)
    with open(project / "eval.py", "a") as handle:
        handle.write("# mine\n")
    (project / "configs" / "default.yaml").unlink()
    edit(project / "README.md", "generated by\nexpflow.", "generated by\nexpflow, and edited by me.")

    report = update_project(project, template=template_0_3)

    outcomes = {a.path: (a.outcome, a.warning) for a in report.files}
    assert outcomes["eval.py"] == ("obsolete", True) and (project / "eval.py").read_text().endswith("# mine\n")
    assert outcomes["configs/sweep-example.yaml"] == ("removed", False)
    assert not (project / "configs" / "sweep-example.yaml").exists()
    assert outcomes["configs/new.yaml"] == ("created", False)
    assert (project / "configs" / "new.yaml").read_text() == "lr: 0.1\n"
    assert outcomes["configs/default.yaml"] == ("deleted", True)
    assert not (project / "configs" / "default.yaml").exists()
    assert outcomes["README.md"] == ("conflict", True) and report.conflicts == ["README.md"]
    readme = (project / "README.md").read_text()
    assert "<<<<<<< yours\n" in readme and "||||||| 0.2.0\n" in readme and ">>>>>>> 0.3.0\n" in readme
    lines = "\n".join(report.lines)
    assert "WARNING: README.md: both changed; conflict markers left in the file" in lines
    assert "WARNING: eval.py: kept (you changed it; 0.3.0 no longer uses it)" in lines
    runtime = project / "expflow_runtime"
    assert (runtime / "VERSION").read_text() == "0.3.0\n"
    assert (runtime / "pristine" / "configs" / "new.yaml").is_file() and not (runtime / "pristine" / "eval.py").exists()
    backup = project / report.backup
    assert (backup / "expflow_runtime" / "VERSION").read_text() == "0.2.0\n"
    assert (backup / "configs" / "sweep-example.yaml").is_file()
    assert not (project / "scripts" / "jobrecord.py").exists()  # shims are for 0.1.0 projects only


def test_uncommitted_changes_are_refused_unless_forced(legacy_template, template_0_2, tmp_path):
    project = legacy_project(legacy_template, tmp_path)
    with open(project / "train.py", "a") as handle:
        handle.write("# not committed\n")
    before = snapshot(project)
    with pytest.raises(UpdateError, match=r"uncommitted changes \(train.py\).*--force"):
        update_project(project, template=template_0_2)
    assert snapshot(project) == before
    preview = update_project(project, dry_run=True, template=template_0_2)
    assert preview.lines[1].startswith("WARNING: uncommitted changes (train.py)") and snapshot(project) == before
    (project / "results").mkdir()  # ignored by the project's .gitignore: does not count
    (project / "results" / "results.csv").write_text("a\n")
    report = update_project(project, force=True, template=template_0_2)
    assert (project / "train.py").read_text().endswith("# not committed\n")
    assert not report.up_to_date and (project / "expflow_runtime" / "VERSION").is_file()


def test_dry_run_writes_nothing(legacy_template, template_0_2, tmp_path, monkeypatch):
    project = legacy_project(legacy_template, tmp_path)
    edit(project / "settings.env", "PRIMARY_METRIC='val_acc'", "PRIMARY_METRIC='val_loss'")
    with open(project / "scripts" / "experiment.py", "a") as handle:
        handle.write("# mine\n")
    commit_all(project, "edits")
    experiment = project / "experiments" / "001"
    experiment.mkdir(parents=True)
    (experiment / "metadata.json").write_text('{"id": "001"}\n')
    monkeypatch.setattr(migrations, "RECORD_MIGRATIONS", [schema_migration()])
    before = snapshot(project)
    report = update_project(project, dry_run=True, template=template_0_2)
    assert snapshot(project) == before
    assert report.lines[0].startswith("Dry run, nothing written: ") and report.lines[-1] == "Dry run: nothing written."
    assert report.records == ["experiments/001/metadata.json"]
    lines = "\n".join(report.lines)
    assert "[OK] settings.env: merged your changes" in lines and "WARNING: scripts/experiment.py: you changed" in lines
    assert "[OK] records 0.1.0 -> 0.2.0 (schema 2): 1 record changed" in lines


# ----------------------------------------------------------------- record migrations

def schema_migration() -> migrations.RecordMigration:
    def migrate(project: Path, backup: Backup | None) -> list[str]:
        return migrations.rewrite_json_records(project, backup, ("experiments/*/metadata.json",),
                                               lambda record: {**record, "schema": 2})

    return migrations.RecordMigration("0.1.0", "0.2.0", "schema 2", migrate)


def test_record_migrations_back_up_each_record_and_are_idempotent(legacy_template, template_0_2, tmp_path,
                                                                  monkeypatch):
    project = legacy_project(legacy_template, tmp_path)
    for exp_id, record in (("001", {"id": "001"}), ("002", {"id": "002", "schema": 2})):
        (project / "experiments" / exp_id).mkdir(parents=True)
        (project / "experiments" / exp_id / "metadata.json").write_text(json.dumps(record))
    untouched = snapshot(project / "experiments" / "002")
    step = schema_migration()
    monkeypatch.setattr(migrations, "RECORD_MIGRATIONS", [step])
    index, rowcache = expflow.runtime.module("index"), expflow.runtime.module("rowcache")
    caches = [project / index.INDEX_FILE, project / ".expflow" / (index.DATA_PREFIX + "x1"),
              project / rowcache.ROWS_FILE, project / rowcache.STATUS_FILE]
    for cache in caches:  # the harvest's, from before the records changed
        cache.parent.mkdir(exist_ok=True)
        cache.write_text("old\n")

    report = update_project(project, template=template_0_2)
    assert not any(cache.exists() for cache in caches)  # the next harvest reads every record

    assert report.records == ["experiments/001/metadata.json"]
    migrated = json.loads((project / "experiments" / "001" / "metadata.json").read_text())
    assert migrated == {"id": "001", "schema": 2}
    backup = project / report.backup / "experiments" / "001" / "metadata.json"
    assert json.loads(backup.read_text()) == {"id": "001"}
    assert snapshot(project / "experiments" / "002") == untouched
    assert "[OK] experiments/001/metadata.json: migrated" in report.lines
    before = snapshot(project)
    assert step.migrate(project, Backup(project, "again")) == []  # idempotent
    assert update_project(project, template=template_0_2).up_to_date
    assert snapshot(project) == before


def test_the_0_2_0_step_moves_jobs_into_the_journal(legacy_template, tmp_path):
    """metadata.json's jobs become journal entries the runtime reads back alike;
    a second run changes nothing; a dry run (no backup) writes nothing."""
    assert [(s.from_version, s.to_version) for s in migrations.record_steps("0.1.0", "0.2.0")] == [("0.1.0", "0.2.0")]
    assert migrations.record_steps("0.2.0", "0.2.0") == []
    project = legacy_project(legacy_template, tmp_path, use_git=False)
    assert migrations.RECORD_MIGRATIONS[0].migrate(project, None) == []
    exp = project / "experiments" / "001"
    exp.mkdir(parents=True)
    jobs = [{"stage": "train", "job_id": "41", "backend": "slurm", "attempt": 1},
            {"stage": "eval", "job_id": "42", "backend": "slurm", "attempt": 1, "after": "41"}]
    (exp / "metadata.json").write_text(json.dumps({"id": "001", "jobs": jobs}))
    assert migrations.RECORD_MIGRATIONS[0].migrate(project, None) == ["experiments/001/metadata.json"]
    assert json.loads((exp / "metadata.json").read_text())["jobs"] == jobs  # the dry run wrote nothing
    backup = Backup(project, "test")
    assert migrations.RECORD_MIGRATIONS[0].migrate(project, backup) == ["experiments/001/metadata.json"]
    assert json.loads((exp / "metadata.json").read_text())["jobs"] == []
    assert json.loads((backup.root / "experiments/001/metadata.json").read_text())["jobs"] == jobs
    ledger = expflow.runtime.module("ledger")
    read_back = ledger.metadata(str(exp))["jobs"]
    assert [{k: job[k] for k in jobs[i]} for i, job in enumerate(read_back)] == jobs
    assert migrations.RECORD_MIGRATIONS[0].migrate(project, backup) == []


# ----------------------------------------------------------------- interruption, CLI, wheel

def test_an_interrupted_swap_is_undone_by_the_next_update(template_0_2, template_0_3, tmp_path, monkeypatch):
    project = project_0_2(template_0_2, tmp_path, monkeypatch)
    (project / "expflow_runtime").rename(project / ".expflow_runtime-old")  # killed between the two renames
    with pytest.raises(UpdateError, match="interrupted update"):
        update_project(project, dry_run=True, template=template_0_3)
    report = update_project(project, template=template_0_3)
    assert report.lines[1].startswith("WARNING: an interrupted update")
    assert (project / "expflow_runtime" / "VERSION").read_text() == "0.3.0\n"
    assert not (project / ".expflow_runtime-old").exists()


def test_cli_update(legacy_template, template_0_2, tmp_path, monkeypatch, capsys):
    project = legacy_project(legacy_template, tmp_path)
    monkeypatch.setattr("expflow.runtime.template_dir", lambda: template_0_2)
    assert main(["update", str(project), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Dry run" in out and "[OK] Makefile: updated" in out
    monkeypatch.chdir(project)
    assert main(["update"]) == 0
    assert (project / "expflow_runtime" / "VERSION").is_file()
    lazy = run([sys.executable, "-c", "import sys, expflow.cli; print('expflow.update' in sys.modules)"], cwd=REPO)
    assert lazy.stdout.strip() == "False"


def test_cli_update_errors_are_one_line(tmp_path, capsys):
    assert main(["update", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("expflow: error: ") and "not an expflow project" in err and err.count("\n") == 1


@pytest.mark.slow
def test_the_wheel_ships_the_0_1_0_data_and_the_shims(tmp_path):
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(REPO)], cwd=tmp_path, timeout=300)
    names = zipfile.ZipFile(next(tmp_path.glob("expflow_hpc-*.whl"))).namelist()
    for name in ("expflow/legacy/template-0.1.0.json", "expflow/legacy/shims/job-lib.sh",
                 "expflow/legacy/shims/jobrecord.py", "expflow/update.py"):
        assert name in names



# ----------------------------------------------------------------- from the 0.2.0 release

@pytest.fixture(scope="session")
def release_0_2_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0.2.0 template as released (commit fe66b53)."""
    return released_template("0.2.0", tmp_path_factory.mktemp("release-0.2.0"))


@pytest.fixture(scope="session")
def release_0_3_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0.3.0 template as released (commit 866e7c3); tests/test_update_e2e.py uses it."""
    return released_template("0.3.0", tmp_path_factory.mktemp("release-0.3.0"))


def test_update_from_0_2_0_keeps_what_jobs_ask_for_and_adds_the_launcher(release_0_2_0, tmp_path, monkeypatch):
    """A project of the real 0.2.0 release whose user asked for 16 CPUs and 4 GPUs:
    after the update it has the new machinery and settings (LAUNCHER, CPUS_PER_GPU),
    and its jobs still ask SLURM for 16 CPUs (no per-GPU scaling it never chose)."""
    project = project_0_2(release_0_2_0, tmp_path, monkeypatch)
    assert project_version(project) == "0.2.0" and not (project / "expflow_runtime/rank-env.sh").exists()
    edit(project / "settings.env", "CPUS='2'", "CPUS='16'")
    edit(project / "settings.env", "GPUS='0'", "GPUS='4'")
    commit_all(project, "0.2.0 with my settings")
    update_project(project)
    new_version = (TEMPLATE_PROJECT / "expflow_runtime" / "VERSION").read_text().strip()
    assert project_version(project) == new_version and (project / "expflow_runtime/rank-env.sh").is_file()
    settings = (project / "settings.env").read_text().splitlines()
    assert {"CPUS='16'", "GPUS='4'", "LAUNCHER='none'", "CPUS_PER_GPU=''", "MEM_PER_GPU=''"} <= set(settings)
    make(project, "new", "EXP=a")
    dry = make(project, "train", "EXP=a", "DRY_RUN=1", env={"BACKEND": "slurm"}).stdout
    assert "--cpus-per-task=16 " in dry and "--gres=gpu:4 " in dry
