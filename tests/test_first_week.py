"""A researcher's first week (issue 15): the mistakes a new user makes and what
the project says back, tested without SLURM; the cluster side is in
test_slurm_cluster.py."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv

import pytest
import test_cli
import test_slurm_cluster
from conftest import REPO, make, metadata, run, status_rows, wait_for
from test_local_backend import LOCAL, error_line, read_csv, wait_state
from test_reliability_files import fake_run

from expflow.cli import main
from expflow.runtime import module

state = module("state")
torch_facts = test_cli.torch_facts  # fixtures
alice_dir = test_slurm_cluster.alice_dir


def dependent(state_now, **entry):
    job = {"job_id": "12", "state": state_now, "reason": "Dependency"}
    state.explain_dependency(dict({"job_id": "12"}, **entry), job, {"job_id": "11", "state": "FAILED"})
    return job["reason"]


@pytest.mark.parametrize(("state_now", "entry", "reason"), [
    ("CANCELLED", {"after": "11", "dependency": "afterok:11"},
     "train job 11 ended FAILED: cancelled by SLURM, its dependency can never be met"),
    ("PENDING", {"after": "11", "dependency": "afterok:11"}, "train job 11 ended FAILED: SLURM cancels this job"),
    ("PENDING", {"after": "11"}, "train job 11 ended FAILED: this job never starts; make cancel it"),
    ("PENDING", {"after": "10"}, "Dependency"),  # after an older training: not this one's to judge
    ("PENDING", {}, "Dependency"),  # submitted without a dependency
])
def test_a_job_whose_training_failed_says_why_it_never_starts(state_now, entry, reason):
    assert dependent(state_now, **entry) == reason


# ----------------------------------------------------------------- bring your own train.py

configs = module("configs")
CONFIG = {"model": {"name": "mlp", "depth": 2, "layers": [64, 32]}, "optimizer": {"lr": 0.1, "nesterov": True},
          "tags": [], "note": None, "debug": False}


def test_the_config_as_flags_for_an_argparse_program():
    assert configs.command_line_flags(CONFIG) == [
        "--model.name=mlp", "--model.depth=2", "--model.layers", "64", "32", "--optimizer.lr=0.1",
        "--optimizer.nesterov"]
    assert configs.command_line_flags(CONFIG, ["optimizer.lr=--lr", "model=--net", "debug=--debug"]) == [
        "--lr=0.1", "--net.name=mlp", "--net.depth=2", "--net.layers", "64", "32"]
    assert configs.command_line_flags({"lr": 1e-05, "x": -1}) == ["--lr=1e-05", "--x=-1"]


@pytest.mark.parametrize(("mapping", "error"), [
    (["optimizer.lrr=--lr"], "config flags: no key 'optimizer.lrr' in the config; did you mean optimizer.lr?"),
    (["lr=--lr"], "config flags: no key 'lr' in the config; did you mean optimizer.lr?"),
    (["optimizer.lr"], "config flags: expected key=--flag, got 'optimizer.lr'"),
    (["optimizer.lr=lr"], "config flags: expected key=--flag, got 'optimizer.lr=lr'"),
])
def test_a_mistyped_flag_mapping_is_one_line_naming_the_near_keys(mapping, error):
    with pytest.raises(configs.files.ProjectError) as caught:
        configs.command_line_flags(CONFIG, mapping)
    assert str(caught.value) == error


def test_an_existing_argparse_script_runs_unchanged_with_a_set_override_as_its_flag(bake):
    """docs/examples/argparse_train.py, copied as is; the stage script's one line
    changed as getting-started.md says; its printed metrics read by METRIC_PATTERN_1."""
    project = bake()
    shutil.copy(REPO / "docs" / "examples" / "argparse_train.py", project / "my_train.py")
    script = project / "scripts" / "train.sbatch"
    script.write_text(script.read_text().replace(
        '  run_stage train "$1" python3 train.py\n',
        '  config_flags "$1" optimizer.lr=--lr training.epochs=--epochs model.depth=--depth\n'
        '  run_stage train "$1" python3 my_train.py "${EXPFLOW_FLAGS[@]}"\n'))
    settings = project / "settings.env"
    settings.write_text(settings.read_text().replace(
        "METRIC_PATTERN_1=''", "METRIC_PATTERN_1='val_acc=(?P<val_acc>[0-9.]+)'"))
    make(project, "train", "EXP=byo", "SET=optimizer.lr=0.5", env=LOCAL)
    wait_state(project, "byo", "train", {"COMPLETED"})
    log = make(project, "logs", "EXP=byo").stdout
    assert "training with lr=0.5 epochs=5 depth=2 layers=[64] nesterov=False" in log
    make(project, "results", env=LOCAL)
    row = read_csv(project)["byo"]
    # the last of 5 epochs with lr=0.5, depth=2: loss = exp(-0.5*2*5), val_acc = 1 - loss/2
    assert row["val_acc"] == f"{1 - math.exp(-5) / 2:.6f}".rstrip("0") and row["optimizer.lr"] == "0.5"


def test_a_mistyped_flag_mapping_stops_the_job_before_it_runs(bake):
    project = bake()
    script = project / "scripts" / "train.sbatch"
    script.write_text(script.read_text().replace(
        '  run_stage train "$1" python3 train.py\n',
        '  config_flags "$1" optimizer.lrr=--lr\n  run_stage train "$1" python3 train.py "${EXPFLOW_FLAGS[@]}"\n'))
    make(project, "train", "EXP=typo", env=LOCAL)
    log = project / "experiments" / "typo" / metadata(project, "typo")["jobs"][0]["log"]
    wait_for(lambda: log.exists() and "nothing was run" in log.read_text(), timeout=30, what="the job's error")
    assert "error: config flags: no key 'optimizer.lrr' in the config; did you mean optimizer.lr?" in log.read_text()
    assert not list((project / "experiments" / "typo" / "runs").glob("train-*.json"))


def test_getting_started_numbers_its_sections_once_each():
    numbers = re.findall(r"^## (\d+)\. ", (REPO / "docs" / "getting-started.md").read_text(), re.M)
    assert numbers == [str(n) for n in range(1, len(numbers) + 1)]


# ----------------------------------------------------------------- DRY_RUN on a new id

def test_dry_run_on_a_new_id_shows_what_would_be_created_and_submitted_and_creates_nothing(bake):
    project = bake(partition="cs")
    out = make(project, "train", "EXP=new", "DRY_RUN=1", "SET=optimizer.lr=0.5", "GPUS=0",
               env={"BACKEND": "slurm"}).stdout
    lines = out.splitlines()
    assert lines[:2] == ["DRY_RUN: nothing created. Would create experiment new from configs/default.yaml with "
                         "SET=optimizer.lr=0.5", "  with its own settings: GPUS=0"]
    assert '"optimizer": {"lr": 0.5, "momentum": 0.9}' in lines[2]
    assert lines[3] == "DRY_RUN: nothing submitted. Command:"
    assert "--partition=cs" in lines[4] and "--gres" not in lines[4] and lines[4].endswith(
        f"scripts/train.sbatch {project}/experiments/new")
    assert not (project / "experiments" / "new").exists()
    refused = make(project, "train", "EXP=new", "DRY_RUN=1", "SET=optimizer.lrr=0.5", env=LOCAL, check=False)
    assert refused.returncode != 0 and "unknown config key 'optimizer.lrr'" in refused.stderr
    assert not (project / "experiments" / "new").exists()


# ----------------------------------------------------------------- $ in make values

def test_a_dollar_in_a_make_value_is_kept_as_typed(bake):
    project = bake()
    make(project, "new", "EXP=cost", "DESC=costs $5 total, $(HOME) and $$", "SET_NEW=1", "SET=note='a$bc'")
    recorded = metadata(project, "cost")
    assert recorded["description"] == "costs $5 total, $(HOME) and $$"
    assert json.loads((project / "experiments" / "cost" / "config.json").read_text())["note"] == "a$bc"
    listed = make(project, "list", "COLUMNS=200").stdout
    assert "costs $5 total, $(HOME) and $$" in listed


# ----------------------------------------------------------------- which values an experiment keeps

def test_values_given_when_an_experiment_is_created_are_kept_later_ones_apply_to_one_call(bake):
    project = bake(partition="cs")
    out = make(project, "new", "EXP=k", "PARTITION=cs", "GPUS=0").stdout
    assert out.splitlines()[1] == ("  it keeps GPUS=0 PARTITION=cs for all its jobs (experiments/k/settings.env); "
                                   "values given to later calls apply to that call only")
    slurm = {"BACKEND": "slurm"}
    once = make(project, "train", "EXP=k", "DRY_RUN=1", "TIME=00:05:00", env=slurm).stdout
    assert "--time=00:05:00" in once and "--gres" not in once
    again = make(project, "train", "EXP=k", "DRY_RUN=1", env=slurm).stdout
    assert "--time=01:00:00" in again and "--partition=cs" in again
    assert (project / "experiments" / "k" / "settings.env").read_text().count("=") == 2


# ----------------------------------------------------------------- make check: the job's environment

def set_settings(project, **values) -> None:
    path = project / "settings.env"
    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key}='.*'$", f"{key}='{value}'", text, flags=re.M)
        assert count == 1, key
    path.write_text(text)


def fake_conda(base, *envs) -> None:
    (base / "etc" / "profile.d").mkdir(parents=True)
    (base / "etc" / "profile.d" / "conda.sh").write_text("conda() { :; }\n")
    for name in envs:
        (base / "envs" / name / "conda-meta").mkdir(parents=True)


def test_make_check_says_which_part_of_the_jobs_environment_would_not_set_up(bake, tmp_path):
    project = bake()
    out = make(project, "check", env=LOCAL).stdout
    assert out.splitlines()[0] == "[OK] the job's environment sets up (none named in settings.env)"
    fake_conda(tmp_path / "conda", "other")
    set_settings(project, ENV_VENV=tmp_path / "nope", ENV_CONDA="myenv", ENV_CONDA_BASE=tmp_path / "conda",
                 ENV_CONTAINER=tmp_path / "missing.sif")
    refused = make(project, "check", env=LOCAL, check=False)
    assert refused.returncode != 0 and refused.stdout == ""
    assert error_line(refused) == (
        f"error: the job's environment would not set up: ENV_CONDA='myenv': no conda environment at "
        f"{tmp_path}/conda/envs/myenv; ENV_VENV='{tmp_path}/nope' is not a virtualenv (no bin/activate); "
        f"ENV_CONTAINER='{tmp_path}/missing.sif' is not a readable file")


def test_make_check_accepts_a_jobs_environment_that_is_there(bake, tmp_path):
    project = bake()
    venv.create(tmp_path / "venv", with_pip=False)
    fake_conda(tmp_path / "conda", "myenv")
    (tmp_path / "image.sif").write_bytes(b"\0")
    set_settings(project, ENV_VENV=tmp_path / "venv", ENV_CONDA="myenv", ENV_CONDA_BASE=tmp_path / "conda",
                 ENV_CONTAINER=tmp_path / "image.sif")
    out = make(project, "check", env=LOCAL).stdout
    assert out.splitlines()[0] == "[OK] the job's environment sets up (ENV_CONDA, ENV_VENV, ENV_CONTAINER)"


@pytest.mark.skipif(bool(shutil.which("modulecmd") or os.path.exists("/etc/profile.d/lmod.sh")),
                    reason="this machine has environment modules: the missing-command case cannot happen")
def test_make_check_says_when_there_is_no_module_command_for_env_modules(bake):
    project = bake()
    set_settings(project, ENV_MODULES="python/3.11 cuda/12.1")
    refused = make(project, "check", env=LOCAL, check=False)
    assert error_line(refused) == ("error: the job's environment would not set up: ENV_MODULES is set but there is "
                                   "no `module` command here (Lmod or Environment Modules)")


# ----------------------------------------------------------------- disk: make du, make prune-logs

def test_make_du_shows_logs_records_and_checkpoints_per_experiment(bake, tmp_path):
    project = bake(scratch_root=str(tmp_path / "scratch"))
    make(project, "train", "EXP=001", env=LOCAL)
    wait_state(project, "001", "train", {"COMPLETED"})
    (project / "experiments" / "001" / "checkpoints" / "big.pt").write_bytes(b"\0" * 3 * 1024 * 1024)
    (project / "experiments" / "001" / "logs" / "extra.out").write_bytes(b"x" * 2048)
    out = make(project, "du").stdout.splitlines()
    assert out[0].split() == ["EXP", "LOGS", "RUNS", "CHECKPOINTS", "OTHER", "TOTAL", "CHECKPOINTS_ON"]
    row = out[1].split()
    assert row[0] == "001" and row[3] == "3.0M" and row[6] == "scratch"
    assert row[1].endswith("K") and float(row[1][:-1]) >= 2.0
    assert out[2].split()[0] == "total"


def test_prune_logs_moves_the_logs_of_finished_experiments_and_deletes_nothing(bake, tmp_path):
    project = bake()
    make(project, "train", "EXP=old", env=LOCAL)
    wait_state(project, "old", "train", {"COMPLETED"})
    refused = make(project, "prune-logs", check=False)
    assert error_line(refused).startswith("error: DEST= names where the logs go")
    logs = sorted(p.name for p in (project / "experiments" / "old" / "logs").iterdir())
    dest = tmp_path / "project-space"
    young = make(project, "prune-logs", f"DEST={dest}", env=LOCAL).stdout  # finished, but not 30 days ago
    assert young.splitlines()[-1].startswith("[OK] 0 files") and not dest.exists()
    dry = make(project, "prune-logs", f"DEST={dest}", "DAYS=0", "DRY_RUN=1", env=LOCAL).stdout
    assert dry.splitlines()[-1].startswith("DRY_RUN: 2 files") and not dest.exists()
    out = make(project, "prune-logs", f"DEST={dest}", "DAYS=0", env=LOCAL).stdout
    assert out.splitlines()[-1] == f"[OK] 2 files of experiments finished 0 days ago or more moved to {dest}"
    moved = dest / project.name / "old"
    assert sorted(p.name for p in (moved / "logs").iterdir()) == logs
    assert len(list((moved / "runs").glob("train-*.packages.txt"))) == 1
    assert (project / "experiments" / "old" / "logs" / "MOVED.txt").is_file()
    assert error_line(make(project, "logs", "EXP=old", check=False)) == (
        f"error: make prune-logs moved this experiment's logs and package lists to {moved}")


# ----------------------------------------------------------------- make compare across environments

comparison = module("comparison")


def with_packages(project, exp, lines) -> None:
    exp_dir = fake_run(project, exp)
    (exp_dir / "runs" / "train-local-0001.packages.txt").write_text("\n".join(lines) + "\n")
    record_path = exp_dir / "runs" / "train-local-0001.json"
    record = json.loads(record_path.read_text())
    record["packages"] = {"tool": "pip freeze", "file": "runs/train-local-0001.packages.txt"}
    record_path.write_text(json.dumps(record))


def test_package_lines_of_pip_and_conda_are_read_whole():
    assert comparison.package_line("numpy==1.26.4") == ("numpy", "1.26.4")
    assert comparison.package_line("-e git+https://example.org/me/mylib.git@0a1b2c#egg=mylib") == (
        "mylib", "editable git+https://example.org/me/mylib.git@0a1b2c")
    assert comparison.package_line("torch @ file:///wheels/torch-2.3.whl") == ("torch", "file:///wheels/torch-2.3.whl")
    assert comparison.package_line("numpy=1.26.4=py311h64a7726_0") == ("numpy", "1.26.4")


def test_compare_across_environments_shows_the_packages_that_differ_and_wraps(bake):
    project = bake()
    common = [f"pkg{i:03d}==1.0" for i in range(120)]
    with_packages(project, "venv1", [*common, "numpy==1.26.4", "-e git+https://example.org/mylib.git@aaa#egg=mylib"])
    with_packages(project, "venv2", [*common, "numpy==2.0.0", "-e git+https://example.org/mylib.git@bbb#egg=mylib"])
    with_packages(project, "conda", ["numpy=2.0.0=py311_0", "python=3.11.9=h955ad1f_0"])
    out = make(project, "compare", "A=venv1", "B=venv2", "C=conda", "COLUMNS=80").stdout
    ran = out.split("== how they ran (what differs)\n")[1]
    blocks = [block.splitlines() for block in ran.strip().split("\n\n")]
    # 80 characters hold one experiment beside the keys here: three blocks, none left out
    assert [block[0].split() for block in blocks] == [["key", "venv1"], ["key", "venv2"], ["key", "conda"]]
    assert "more columns" not in out and all(len(line) <= 80 for block in blocks for line in block)
    rows = {line[:21].strip(): line[21:].strip() for line in blocks[0][1:]}
    assert rows == {"package mylib": "editable git+https://example.org/mylib.git@aaa", "package numpy": "1.26.4",
                    "packages not in all": "121 (mylib, pkg000, pkg001, ...)"}
    assert "packages not in all  1 (python)" in blocks[2]


# ----------------------------------------------------------------- a sweep's results: swept parameters first

def test_a_sweeps_results_show_the_swept_parameters_first(bake):
    project = bake()
    (project / "configs" / "small.yaml").write_text(
        "set:\n  training.seconds_per_epoch: 0.01\ngrid:\n  optimizer.lr: [0.1, 0.2]\n  model.depth: [2, 3]\n")
    make(project, "sweep", "SWEEP=configs/small.yaml", env=LOCAL)
    wait_for(lambda: all(row["STATE"] == "COMPLETED" for row in status_rows(project, env=LOCAL).values()),
             timeout=60, what="the sweep's 4 points")
    out = make(project, "results", env={"COLUMNS": "70"}).stdout
    header = next(line for line in out.splitlines() if line.startswith("| id "))  # below the line of counts
    assert header.startswith("| id | state | model.depth | optimizer.lr | ")


# ----------------------------------------------------------------- scaffold: git, prompts, --no-detect

GIT_IDENTITY = {"GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.edu", "GIT_COMMITTER_NAME": "Ada",
                "GIT_COMMITTER_EMAIL": "ada@example.edu"}


def scripted(answers, questions):
    feed = iter(answers)

    def ask(question):
        questions.append(question)
        return next(feed)
    return ask


def test_scaffold_offers_git_init_and_the_project_records_its_own_commit(tmp_path, monkeypatch, capsys):
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    questions = []
    answers = [""] * 6 + ["y"]  # the defaults, then: yes, a git repository
    assert main(["scaffold", "p", "-o", str(tmp_path), "--no-detect"], ask=scripted(answers, questions)) == 0
    assert questions[-1] == "Make the project a git repository (each run then records its commit) (y, n) [y]: "
    assert "[OK] git repository created in" in capsys.readouterr().out
    log = subprocess.run(["git", "-C", str(tmp_path / "p"), "log", "--format=%s"], capture_output=True, text=True)
    assert log.stdout == "expflow scaffold\n"


def test_scaffold_without_input_says_what_no_git_costs(tmp_path, capsys):
    assert main(["scaffold", "p", "-o", str(tmp_path), "--no-input", "--no-detect"]) == 0
    err = capsys.readouterr().err
    assert f"NOTE: {tmp_path / 'p'} is not under git: runs record no commit and no diff of your code." in err
    assert not (tmp_path / "p" / ".git").exists()


def test_scaffold_inside_another_repository_warns(tmp_path, capsys):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert main(["scaffold", "p", "-o", str(tmp_path), "--no-detect"], ask=scripted([""] * 6, [])) == 0
    err = capsys.readouterr().err
    assert f"WARNING: {tmp_path / 'p'} is inside the git repository {tmp_path}: every run records that " \
           "repository's commit and diff" in err


def test_scaffold_prompts_ask_again_after_an_invalid_answer(tmp_path, monkeypatch, torch_facts, capsys):
    monkeypatch.setattr("expflow.cli.start_detect", lambda: lambda: torch_facts)
    questions = []
    answers = ["nosuch", "l40s_public", "h200", "l40s", "two", "2", "nobody", "", "4 hours", "04:00:00",
               "docker", "none", "n"]
    assert main(["scaffold", "p", "-o", str(tmp_path)], ask=scripted(answers, questions)) == 0
    err = capsys.readouterr().err
    assert "  'nosuch' is not one of cs, rtx8000, l40s_public, h200_tandon; try again" in err
    assert "  'h200' is not one of l40s; try again" in err
    assert "  GPUS='two' is not a whole number of GPUs per node, such as 1; try again" in err
    assert "  TIME='4 hours' is not a SLURM time such as 04:00:00 or 1-00:00:00; try again" in err
    assert "  'docker' is not one of none, modules, conda, venv, apptainer; try again" in err
    assert len(questions) == len(answers)
    settings = (tmp_path / "p" / "settings.env").read_text().splitlines()
    assert {"PARTITION='l40s_public'", "GPUS='2'", "TIME='04:00:00'"} <= set(settings)


def test_no_detect_help_says_what_it_writes(capsys):
    with pytest.raises(SystemExit):
        main(["scaffold", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--no-detect skip detection: offline defaults (BACKEND=auto: SLURM where sbatch is on PATH, else " \
           "this machine)" in help_text


# ----------------------------------------------------------------- the small things (Low)

def test_the_usual_slips_get_one_line_that_says_what_to_do(bake):
    project = bake()
    assert error_line(make(project, "sweep", check=False)) == (
        "error: name a sweep file: make sweep SWEEP=configs/sweep-example.yaml")
    assert error_line(make(project, "list", "STATE=BOGUS", check=False)).startswith(
        "error: STATE='BOGUS': no state BOGUS (states: BOOT_FAIL, CANCELLED, COMPLETED,")
    assert error_line(make(project, "status", "EXP=nope", check=False)) == (
        "error: no experiment nope (make list shows them)")
    typo = make(project, "trian", check=False)
    assert typo.returncode != 0 and typo.stderr.endswith(
        "*** no target 'trian' here: make help lists the targets.  Stop.\n")
    hostile = make(project, "x;touch pwned", check=False)
    assert hostile.returncode != 0 and not (project / "pwned").exists()


@pytest.mark.parametrize(("assignment", "hint"), [
    ("lr=0.1", "did you mean optimizer.lr?"),  # the same name elsewhere
    ("optimizer.lrr=0.1", "did you mean optimizer.lr?"),  # the last name misspelt
    ("optimiser.lr=0.1", "did you mean optimizer.lr?"),  # a section misspelt
    ("model.dept=3", "did you mean model.depth or model.width?"),  # every near key, closest first
    ("model.with=3", "did you mean model.width or model.depth?"),
    ("training.epoch=3", "did you mean training.epochs?"),
])
def test_a_set_typo_names_every_near_key(bake, assignment, hint):
    result = make(bake(), "new", "EXP=t", f"SET={assignment}", check=False)
    assert error_line(result).endswith("(SET_NEW=1 adds it); " + hint)


def test_one_experiment_is_one_experiment_and_status_filters_by_exp(bake):
    project = bake()
    make(project, "new", "EXP=001")
    make(project, "new", "EXP=002")
    assert "[OK] 2 experiments -> results/results.csv" in make(project, "results").stdout
    assert "[OK] 1 experiment -> results/results.csv" in make(project, "results", "FILTER=id=001").stdout
    rows = status_rows(project, env={"EXP": "002"})
    assert list(rows) == [("002", "")]


def test_make_plot_draws_the_primary_metric_without_metric(bake):
    project = bake()
    make(project, "train", "EXP=001", env=LOCAL)
    wait_state(project, "001", "train", {"COMPLETED"})
    make(project, "plot")
    assert (project / "results" / "plot-val_acc.png").stat().st_size > 1000


def test_an_ended_job_shows_no_pending_reason():
    """sacct keeps a cancelled job's last pending reason (Resources, Dependency): stale once it ended."""
    slurmkit = module("slurmkit")
    job = {"job_id": "5", "backend": "slurm", "resources": {}}
    for job_state, shown in (("CANCELLED", ""), ("PENDING", "Resources")):
        info = slurmkit.JobInfo(**{field: "" for field in slurmkit.JobInfo._fields})._replace(
            job_id="5", state=job_state, reason="Resources", restarts=0, history=())
        assert state.merged_job(job, {}, info)["reason"] == shown


def test_a_multi_node_request_says_so():
    slurmkit = module("slurmkit")
    assert slurmkit.describe_request({"partition": "a100_multi", "nodes": "2", "gpu_type": "a100", "gpus": "4",
                                      "time": "01:00:00"}) == "a100_multi, 2 nodes, 4x a100 per node, 01:00:00"
    assert slurmkit.describe_request({"partition": "cs", "nodes": "1", "gpus": "0", "time": "01:00:00"}) == (
        "cs, 01:00:00")


# ----------------------------------------------------------------- shell completion

def complete(cwd, line):
    """What bash offers for the command line `line` (cursor at its end), with
    expflow's completion script loaded as users load it."""
    script = subprocess.run([sys.executable, "-m", "expflow", "completion", "bash"], capture_output=True, text=True,
                            check=True, cwd=REPO).stdout
    words = line.replace("=", " = ").split() + ([""] if line.endswith((" ", "=")) else [])
    driver = (script + '\nCOMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; shift; COMP_WORDS=("$@"); '
              'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
              '"$(complete -p "${COMP_WORDS[0]}" | sed "s/.*-F \\([^ ]*\\) .*/\\1/")" "${COMP_WORDS[0]}" '
              '"${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"; printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "-c", driver, "complete", line, *words], capture_output=True, text=True,
                         cwd=cwd, check=True).stdout
    return sorted(word for word in out.splitlines() if word)


def test_bash_completes_expflow_and_experiment_ids_in_make(bake):
    assert complete(REPO, "expflow sc") == ["scaffold"]
    assert complete(REPO, "expflow scaffold --no-") == ["--no-detect", "--no-input"]
    project = bake()
    make(project, "new", "EXP=001")
    make(project, "new", "EXP=002")
    make(project, "new", "EXP=big-lr")
    assert complete(project, "make train EXP=0") == ["001", "002"]
    assert complete(project, "make compare A=001 B=") == ["001", "002", "big-lr"]
    assert complete(project, "make pru") == ["prune-logs"]


# ----------------------------------------------------------------- getting-started.md, walked through

def walkthrough_steps(text):
    """[(command, expected to fail)] of docs/getting-started.md in order: the
    lines after `$ ` (an `error:` in their output: meant to fail), and every
    line of a block without them, comments aside; ```bash blocks are file text."""
    steps = []
    for language, block in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        lines = block.splitlines()
        if language:
            continue
        if not any(line.startswith("$ ") for line in lines):
            steps += [(line, False) for line in lines if line.strip() and not line.lstrip().startswith("#")]
            continue
        for index, line in enumerate(lines):
            if line.startswith("$ "):
                output = []
                for later in lines[index + 1:]:
                    if later.startswith("$ "):
                        break
                    output.append(later)
                steps.append((line[2:], any(out.startswith("error:") for out in output)))
    return steps


def walkthrough_script(steps):
    """One bash session (cd and . carry over) that runs each step and stops at
    the first that does not end as the doc says."""
    lines = []
    for number, (command, failing) in enumerate(steps, 1):
        wrong = "status == 0" if failing else "status != 0"
        lines += [f"echo {shlex.quote(f'+++ step {number}: {command}')}", command + " </dev/null", "status=$?",
                  f"if (({wrong})); then echo '+++ step {number} ended otherwise than the doc says:' $status; "
                  "exit 1; fi"]
    return "\n".join(lines) + "\necho '+++ the walk-through is done'\n"


def test_walkthrough_steps_are_read_from_the_doc():
    steps = walkthrough_steps((REPO / "docs" / "getting-started.md").read_text())
    commands = [command for command, _ in steps]
    assert commands[:4] == ["python3 -m venv ~/.venvs/expflow", ". ~/.venvs/expflow/bin/activate",
                            "python3 -m pip install .", "expflow --version"]
    assert ("make check EXP=001 PARTITION=l40s_public GPU_TYPE=h200 GPUS=1", True) in steps
    first_train = next(i for i, command in enumerate(commands) if command.startswith("make train EXP=001"))
    assert "cd my-project" in commands[:first_train]
    assert not any("config_flags" in command or command.startswith("METRIC_PATTERN") for command in commands)


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_getting_started_runs_as_written_from_a_fresh_venv(alice_dir):
    """docs/getting-started.md, every command in order, as alice on the test
    cluster: a fresh virtualenv, this checkout installed into it, a project, jobs."""
    checkout = alice_dir / "expflow-checkout"
    (alice_dir / "scratch").mkdir()
    shutil.chown(alice_dir / "scratch", "alice", "alice")
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build",
                                                                   "dist", ".venv", ".pytest_cache"))
    subprocess.run(["chown", "-R", "alice:alice", str(checkout)], check=True)
    script = alice_dir / "walkthrough.sh"
    script.write_text(walkthrough_script(walkthrough_steps((REPO / "docs" / "getting-started.md").read_text())))
    path = ":".join(dict.fromkeys([os.path.dirname(shutil.which("sbatch")), "/usr/local/bin", "/usr/bin", "/bin"]))
    result = run(["bash", str(script)], cwd=checkout, user="alice", check=False, timeout=900,
                 env={"HOME": str(alice_dir), "PATH": path, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                      "XDG_CACHE_HOME": str(alice_dir / ".cache"), "XDG_CONFIG_HOME": str(alice_dir / ".config"),
                      "XDG_DATA_HOME": str(alice_dir / ".local"),
                      "SCRATCH": str(alice_dir / "scratch")})  # checkpoints of "my-project": this run's own
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("+++ the walk-through is done")
    project = alice_dir / "my-project"
    assert (project / "experiments" / "001" / "metadata.json").is_file()
    assert (project / "results" / "report.html").is_file()


def test_answers_piped_in_that_never_fit_stop_after_five_tries(tmp_path, capsys):
    def ask(question):
        return "nonsense"  # `yes nonsense | expflow scaffold p`
    assert main(["scaffold", "p", "-o", str(tmp_path), "--no-detect"], ask=ask) == 1
    err = capsys.readouterr().err
    assert err.count("try again") == 5 and err.splitlines()[-1] == (
        "expflow: error: GPUs per job: no valid answer in 5 tries")
    assert not (tmp_path / "p").exists()
