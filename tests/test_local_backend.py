"""A generated project used as a researcher would on a laptop: no SLURM, the
local backend, real make targets, real jobs (the example train.py / eval.py)."""

import csv
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import make, metadata, status_rows, wait_for

LOCAL = {"BACKEND": "local"}


def set_config(project: Path, exp: str, **values) -> None:
    """Edit experiments/<exp>/config.yaml as a user would between new and train."""
    path = project / "experiments" / exp / "config.yaml"
    text = path.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^(\s*{key}:).*$", rf"\g<1> {value}", text, flags=re.M)
        assert count <= 1, key
        if not count:  # a key only the example train.py reads (fail_with_exit_code): added at the top level
            text += f"{key}: {value}\n"
    path.write_text(text)


def wait_state(project: Path, exp: str, stage: str, states: set[str], timeout: float = 60) -> dict:
    def reached():
        row = status_rows(project, env=LOCAL).get((exp, stage))
        return row if row and row["STATE"] in states else None
    return wait_for(reached, timeout=timeout, what=f"{exp} {stage} in {states}")


def error_line(result) -> str:
    """The script's one-line error; make adds its own "make: *** ..." line after it."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def read_csv(project: Path) -> dict[str, dict[str, str]]:
    with open(project / "results" / "results.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def test_train_eval_status_results(bake):
    project = bake()
    out = make(project, "train", "EXP=001", env=LOCAL).stdout
    assert "[OK] created experiment 001" in out and "submitted train job local-" in out
    out = make(project, "eval", "EXP=001", env=LOCAL).stdout  # before train ends: it waits
    assert "after train job local-" in out
    wait_state(project, "001", "eval", {"COMPLETED"})
    rows = status_rows(project, env=LOCAL)
    assert rows[("001", "train")]["STATE"] == "COMPLETED" and rows[("001", "train")]["EXIT"] == "0"
    make(project, "results", env=LOCAL)
    row = read_csv(project)["001"]
    # The example's final epoch (4) with lr=0.1, depth=2: loss = exp(-0.1*2*5) + 0.01*Random(4).random()
    # = 0.367879 + 0.002360 = 0.37024, val_acc = 1 - loss/2 = 0.81488, test_acc = val_acc - 0.01.
    assert (row["loss"], row["val_acc"], row["test_acc"]) == ("0.37024", "0.81488", "0.80488")
    assert row["state"] == "COMPLETED" and row["eval_state"] == "COMPLETED" and row["exit_code"] == "0"
    assert row["optimizer.lr"] == "0.1" and row["model.name"] == "mlp"
    assert "| 001 |  | COMPLETED | 0 | COMPLETED |" in (project / "results" / "results.md").read_text()
    record = json.loads(next((project / "experiments/001/runs").glob("train-*.json")).read_text())
    assert record["state"] == "COMPLETED" and record["exit_code"] == 0 and record["started"] <= record["ended"]


def test_failing_job_is_failed_with_its_exit_code(bake):
    project = bake()
    make(project, "new", "EXP=bad")
    set_config(project, "bad", fail_with_exit_code=3)
    make(project, "train", "EXP=bad", env=LOCAL)
    row = wait_state(project, "bad", "train", {"FAILED"})
    assert row["EXIT"] == "3"
    refused = make(project, "eval", "EXP=bad", env=LOCAL, check=False)
    assert refused.returncode != 0 and "ended FAILED (exit 3): eval not submitted" in refused.stderr
    make(project, "results", env=LOCAL)
    assert read_csv(project)["bad"]["exit_code"] == "3"


def test_cancel_a_running_local_job(bake):
    project = bake()
    make(project, "new", "EXP=long")
    set_config(project, "long", seconds_per_epoch=30)
    make(project, "train", "EXP=long", env=LOCAL)
    wait_state(project, "long", "train", {"RUNNING"})
    assert "[OK] cancel requested for long: train job local-" in make(project, "cancel", "EXP=long").stdout
    wait_state(project, "long", "train", {"CANCELLED"})


def test_existing_experiment_is_never_overwritten(bake):
    project = bake()
    make(project, "new", "EXP=001")
    config = project / "experiments/001/config.yaml"
    config.write_text(config.read_text() + "# my edit\n")
    again = make(project, "new", "EXP=001", check=False)
    assert again.returncode != 0 and error_line(again) == "error: experiment 001 already exists; nothing changed"
    assert config.read_text().endswith("# my edit\n")


def test_submitted_stage_is_not_resubmitted_by_accident(bake):
    project = bake()
    make(project, "train", "EXP=001", env=LOCAL)
    again = make(project, "train", "EXP=001", env=LOCAL, check=False)
    assert again.returncode != 0 and "add RESUBMIT=1" in error_line(again)
    wait_state(project, "001", "train", {"COMPLETED"})
    make(project, "train", "EXP=001", "RESUBMIT=1", env=LOCAL)
    recorded = metadata(project, "001")
    assert [job["stage"] for job in recorded["jobs"]] == ["train", "train"]
    wait_state(project, "001", "train", {"COMPLETED"})


@pytest.mark.parametrize("exp", ["../escape", "a b", "a;touch pwned", "`touch pwned`", "-rf", ".hidden", "x/y"])
def test_invalid_ids_create_nothing(bake, exp):
    project = bake()
    result = make(project, "train", f"EXP={exp}", env=LOCAL, check=False)
    assert result.returncode != 0 and error_line(result).startswith("error: invalid experiment id")
    assert not (project / "experiments").exists()
    assert not (project / "pwned").exists() and not (project.parent / "escape").exists()


def test_make_syntax_in_a_value_is_not_run(bake):
    """$(...) in a command-line value is kept as typed (the Makefile takes make's
    unexpanded text): it never reaches a shell, and such an id is refused."""
    project = bake()
    result = make(project, "train", "EXP=$(touch pwned)", env=LOCAL, check=False)
    assert result.returncode != 0 and error_line(result).startswith("error: invalid experiment id '$(touch pwned)'")
    assert not (project / "pwned").exists()


def test_bad_resource_override_is_one_clear_line(bake):
    project = bake()
    result = make(project, "train", "EXP=001", "TIME=4h", env=LOCAL, check=False)
    assert result.returncode != 0
    assert error_line(result) == "error: TIME='4h' is not a SLURM time such as 04:00:00 or 1-00:00:00"
    assert not (project / "experiments" / "001").exists()


def test_dry_run_prints_the_sbatch_command_and_submits_nothing(bake):
    project = bake(partition="", account="")
    make(project, "new", "EXP=001")
    out = make(project, "train", "EXP=001", "DRY_RUN=1", "GPUS=2", "GPU_TYPE=h200", "PARTITION=h200_tandon",
               env={"BACKEND": "slurm"}).stdout
    assert "DRY_RUN: nothing submitted" in out
    assert "--partition=h200_tandon" in out and "--gres=gpu:h200:2" in out and "--time=01:00:00" in out
    assert "#SBATCH --job-name=train" in out
    assert metadata(project, "001")["jobs"] == []


def test_corrupt_results_file_is_a_warning_on_its_row(bake):
    project = bake()
    for exp in ("good", "broken"):
        make(project, "train", f"EXP={exp}", env=LOCAL)
    for exp in ("good", "broken"):
        wait_state(project, exp, "train", {"COMPLETED"})
    (project / "experiments/broken/train_results.json").write_text('{"val_acc": 0.9')  # half-written
    result = make(project, "results", env=LOCAL)
    assert "WARNING: experiment broken: train_results.json:" in result.stderr
    rows = read_csv(project)
    assert rows["good"]["val_acc"] == "0.81488" and rows["good"]["warnings"] == ""
    assert rows["broken"]["val_acc"] == "" and "train_results.json" in rows["broken"]["warnings"]


def test_status_with_no_experiments_and_results_columns_are_stable(bake):
    project = bake()
    assert make(project, "status").stdout.strip() == "no experiments yet: make train EXP=001"
    make(project, "new", "EXP=b")
    make(project, "new", "EXP=a")
    make(project, "results")
    with open(project / "results" / "results.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[:5] == ["id", "sweep", "state", "exit_code", "eval_state"]
    assert header.index("model.depth") < header.index("training.seed")
    assert [row["state"] for row in read_csv(project).values()] == ["NEW", "NEW"]


def test_checkpoints_live_in_scratch_and_are_never_reused(bake, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    project = bake(scratch_root=str(scratch))
    make(project, "train", "EXP=001", env=LOCAL)
    wait_state(project, "001", "train", {"COMPLETED"})
    assert (scratch / "demo" / "checkpoints" / "001" / "last.json").is_file()
    shutil.rmtree(project / "experiments" / "001")  # the experiment is gone, its checkpoints are not
    again = make(project, "new", "EXP=001", check=False)
    assert again.returncode != 0
    assert error_line(again) == f"error: {scratch}/demo/checkpoints/001 already holds checkpoints; " \
                                "remove it or choose another id"
    assert not (project / "experiments" / "001").exists()
    assert [p.name for p in (project / "experiments").iterdir()] == []  # no staging dir left behind


def test_editing_the_stage_script_does_not_change_a_running_job(bake):
    """bash reads a script file while it runs it: like sbatch, the local backend
    runs the script as it was at submission, so an edit saved in place (as nano
    does) while a job runs leaves that job alone."""
    project = bake()
    make(project, "new", "EXP=x", "SET=training.seconds_per_epoch=0.5 training.epochs=4", env=LOCAL)
    make(project, "train", "EXP=x", env=LOCAL)
    time.sleep(0.5)
    script = project / "scripts" / "train.sbatch"
    script.write_text(script.read_text().replace("python3 train.py", "env MY_SETTING=1 python3 train.py --note x"))
    assert wait_state(project, "x", "train", {"COMPLETED", "FAILED"})["STATE"] == "COMPLETED"
