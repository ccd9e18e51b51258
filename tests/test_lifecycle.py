"""The experiment lifecycle on the local backend: configs and overrides, logs,
resume, list, archive, and the reproducibility records. The same targets run on
the SLURM test cluster in test_slurm_cluster.py."""

import json
import subprocess

import pytest
from conftest import make, metadata, run
from test_local_backend import LOCAL, error_line, set_config, wait_state

from expflow.runtime import module


def test_set_overrides_are_typed_and_checked(bake):
    project = bake()
    make(project, "new", "EXP=a", "SET=optimizer.lr=0.01 model.name='res net' training.epochs=3 model.depth='50'")
    config = (project / "experiments/a/config.yaml").read_text()
    assert config.startswith("# configs/default.yaml with SET=optimizer.lr=0.01")
    make(project, "train", "EXP=a", env=LOCAL)  # writes config.json from the edited config.yaml
    loaded = json.loads((project / "experiments/a/config.json").read_text())
    assert loaded["optimizer"]["lr"] == 0.01 and loaded["model"]["name"] == "res net"
    assert loaded["training"]["epochs"] == 3 and loaded["model"]["depth"] == "50"
    bad = make(project, "new", "EXP=b", "SET=lr=0.1", check=False)
    assert error_line(bad) == "error: SET: unknown config key 'lr' (SET_NEW=1 adds it); did you mean optimizer.lr?"
    assert not (project / "experiments/b").exists()
    make(project, "new", "EXP=b", "SET=extra.flag=true", "SET_NEW=1")
    assert "flag: true" in (project / "experiments/b/config.yaml").read_text()


def test_from_an_experiment_records_its_parent(bake):
    project = bake()
    make(project, "new", "EXP=base", "SET=optimizer.lr=0.5", "DESC=the baseline")
    make(project, "new", "EXP=child", "FROM=base", "SET=model.depth=4")
    child = metadata(project, "child")
    assert child["parent"] == "base" and child["config_source"] == "experiments/base/config.yaml"
    text = (project / "experiments/child/config.yaml").read_text()
    assert "lr: 0.5" in text and "depth: 4" in text
    missing = make(project, "new", "EXP=x", "FROM=nope", check=False)
    assert error_line(missing) == "error: FROM=nope: no such experiment or config file"
    listed = make(project, "list").stdout
    assert "base   NEW    the baseline" in listed


def test_resources_at_creation_stay_with_the_experiment(bake):
    project = bake()
    make(project, "new", "EXP=big", "PARTITION=h200_tandon", "GPU_TYPE=h200", "GPUS=2", "QOS=high")
    out = make(project, "train", "EXP=big", "DRY_RUN=1", env={"BACKEND": "slurm"}).stdout
    assert "--partition=h200_tandon" in out and "--gres=gpu:h200:2" in out and "--qos=high" in out
    out = make(project, "train", "EXP=big", "DRY_RUN=1", "GPUS=1", env={"BACKEND": "slurm"}).stdout
    assert "--gres=gpu:h200:1" in out  # the command line wins over the experiment's own settings


def test_resume_continues_from_the_checkpoint(bake):
    project = bake()
    make(project, "new", "EXP=r", "SET_NEW=1", "SET=training.seconds_per_epoch=0.1 crash_at_epoch=2")
    not_yet = make(project, "resume", "EXP=r", check=False)
    assert error_line(not_yet) == "error: experiment r was never trained: make train EXP=r"
    make(project, "train", "EXP=r", env=LOCAL)
    wait_state(project, "r", "train", {"FAILED"})
    out = make(project, "resume", "EXP=r", env=LOCAL).stdout
    assert "submitted train job" in out
    wait_state(project, "r", "train", {"COMPLETED"})
    jobs = metadata(project, "r")["jobs"]
    assert [job["attempt"] for job in jobs] == [1, 2]
    logs = sorted((project / "experiments/r/logs").iterdir())
    assert len(logs) == 2  # no earlier log overwritten
    second = (project / "experiments/r" / jobs[1]["log"]).read_text()
    assert "resuming at epoch 2 (attempt 2)" in second and "epoch 4:" in second and "epoch 0:" not in second
    again = make(project, "resume", "EXP=r", env=LOCAL, check=False)
    assert "is COMPLETED: only FAILED" in error_line(again)


def test_logs_and_stage(bake):
    project = bake()
    make(project, "train", "EXP=l", env=LOCAL)
    wait_state(project, "l", "train", {"COMPLETED"})
    make(project, "eval", "EXP=l", env=LOCAL)
    wait_state(project, "l", "eval", {"COMPLETED"})
    out = make(project, "logs", "EXP=l", "N=3").stdout.splitlines()
    assert len(out) == 3 and out[-1].startswith("epoch 4:")
    assert "test_acc=0.80488" in make(project, "logs", "EXP=l", "STAGE=eval").stdout
    bad = make(project, "logs", "EXP=l", "STAGE=deploy", check=False)
    assert error_line(bad) == "error: STAGE='deploy' is not one of train, eval"
    follow = subprocess.Popen(["make", "-s", "tail", "EXP=l", "N=1"], cwd=project, stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout.readline().startswith("epoch 4:")
    finally:
        follow.terminate()
        follow.wait(timeout=10)


def test_archive_moves_and_never_deletes(bake):
    project = bake()
    make(project, "train", "EXP=old", "SET=training.seconds_per_epoch=5", env=LOCAL)
    busy = make(project, "archive", "EXP=old", check=False)
    assert "still has" in error_line(busy) and "make cancel EXP=old first" in error_line(busy)
    make(project, "cancel", "EXP=old")
    wait_state(project, "old", "train", {"CANCELLED"})
    assert make(project, "archive", "EXP=old").stdout.strip() == "[OK] archived old -> archive/old"
    assert (project / "archive/old/metadata.json").is_file() and not (project / "experiments/old").exists()
    assert make(project, "status").stdout.strip() == "no experiments yet: make train EXP=001"


def test_list_filters_by_state(bake):
    project = bake()
    make(project, "new", "EXP=ok")
    make(project, "new", "EXP=bad")
    set_config(project, "bad", fail_with_exit_code=2)
    for exp in ("ok", "bad"):
        make(project, "train", f"EXP={exp}", env=LOCAL)
    wait_state(project, "bad", "train", {"FAILED"})
    wait_state(project, "ok", "train", {"COMPLETED"})
    lines = make(project, "list", "STATE=failed").stdout.splitlines()
    assert lines[0].split() == ["EXP", "STATE", "DESCRIPTION"] and [line.split()[0] for line in lines[1:]] == ["bad"]


def git(project, *args):
    return run(["git", *args], cwd=project).stdout


def test_git_records_a_patch_that_reproduces_the_code(bake, tmp_path):
    project = bake()
    git(project, "init", "-q")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", "--allow-empty")
    git(project, "add", "-A")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project")
    commit = git(project, "rev-parse", "HEAD").strip()
    train = project / "train.py"
    train.write_text(train.read_text().replace("Example training code", "My edited training code"))
    (project / "notes.txt").write_text("untracked\n")
    result = make(project, "train", "EXP=g", env=LOCAL)
    assert "WARNING: submitted from a dirty git tree; the diff is saved in experiments/g/git/train-" in result.stderr
    job = metadata(project, "g")["jobs"][0]
    assert job["git"]["commit"] == commit and job["git"]["dirty"] is True and job["git"]["branch"]
    assert job["git"]["untracked"] == ["notes.txt"]
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], cwd=tmp_path)
    run(["git", "checkout", "-q", commit], cwd=clone)
    run(["git", "apply", str(project / "experiments/g" / job["git"]["patch"])], cwd=clone)
    assert (clone / "train.py").read_text() == train.read_text()
    wait_state(project, "g", "train", {"COMPLETED"})


def test_the_job_records_its_environment(bake):
    project = bake()
    make(project, "train", "EXP=e", env=LOCAL)
    wait_state(project, "e", "train", {"COMPLETED"})
    record_path = next((project / "experiments/e/runs").glob("train-*.json"))
    record = json.loads(record_path.read_text())
    assert record["python"] and record["python_executable"] and record["attempt"] == 1
    assert record["packages"]["tool"] == "pip freeze"
    packages = (project / "experiments/e" / record["packages"]["file"]).read_text()
    assert "pip==" in packages


NVIDIA_SMI = """\
NVIDIA H200, 565.57.01, 143771 MiB
NVIDIA H200, 565.57.01, 143771 MiB
"""


def test_gpu_capture_parses_nvidia_smi():
    jobrecord = module("jobrecord")
    assert jobrecord.parse_nvidia_smi(NVIDIA_SMI) == [
        {"name": "NVIDIA H200", "driver": "565.57.01", "memory": "143771 MiB"}] * 2
    assert jobrecord.parse_nvidia_smi("") == []
    assert "--query-gpu=name,driver_version,memory.total" in jobrecord.NVIDIA_SMI_ARGV


@pytest.mark.parametrize("setting", ["QOS=a b", "CONSTRAINT=a100;id", "MAIL_TYPE=end;reboot"])
def test_new_resource_keys_are_validated(bake, setting):
    project = bake()
    result = make(project, "new", "EXP=v", setting, check=False)
    assert error_line(result).startswith(f"error: {setting.split('=')[0]}=")
    assert not (project / "experiments/v").exists()
