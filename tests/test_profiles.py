"""One project, several clusters, without a cluster: profiles read by the
settings' one reader, which profile a machine gets (PROFILE=, the cluster's
name, cached with a bound on its age, local), splitting one settings.env into
profiles without losing a value, `expflow profile add/list`, the 0.4.0 record
migration. On the SLURM test clusters: tests/test_clusters.py."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import test_update
from conftest import make, read_data, wait_for
from test_update import edit, project_0_2

from expflow import migrations
from expflow.cli import main
from expflow.fileops import Backup
from expflow.runtime import module
from expflow.update import update_project

legacy_template = test_update.legacy_template  # the fixtures the synthetic 0.2.0 to 0.4.0 templates are made with
template_0_2 = test_update.template_0_2
template_0_3 = test_update.template_0_3
template_0_4 = test_update.template_0_4
# the SLURM commands a project or expflow calls: a machine "without SLURM" lacks them
SLURM_COMMANDS = {"sbatch", "scontrol", "squeue", "sacct", "sacctmgr", "sinfo", "scancel", "srun", "salloc"}


@pytest.fixture
def no_slurm_path(tmp_path: Path) -> str:
    """PATH as on a laptop: everything this machine has, but no SLURM command."""
    bin_dir = tmp_path / "bin-without-slurm"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            if name not in SLURM_COMMANDS and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(directory, name))
    return str(bin_dir)


def profiles():
    return module("profiles")


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_cluster_name_comes_from_recorded_scontrol_output():
    assert profiles().cluster_name(read_data("scontrol-show-config-greene.txt")) == "greene"
    assert profiles().cluster_name(read_data("scontrol-show-config.txt")) == "torch"
    assert profiles().cluster_name("") == ""


def test_splitting_settings_env_keeps_every_value(bake):
    project = bake(cluster="torch", account="o_connor_lab", partition="p1", gpus="2", gpu_type="l40s",
                   env_modules="python/3.11 cuda/12.1", scratch_root="/scratch/o'connor/with space",
                   env_conda="my 'env'")
    (project / "settings.env").write_text((project / "settings.env").read_text() + "ACCOUNT='given twice'\n")
    files = module("files")
    before = files.read_settings(str(project))
    moved = profiles().split_settings(str(project), "torch")
    assert moved["ACCOUNT"] == "given twice" and moved["SCRATCH_ROOT"] == "/scratch/o'connor/with space"
    shared = files.read_settings(str(project))
    # each cluster value lives in the profile only; CLUSTER, the cluster it was made for, is kept
    assert set(shared) & set(profiles().PROFILE_KEYS) == {"CLUSTER"} and shared["CLUSTER"] == "torch"
    assert shared["PRIMARY_METRIC"] == "val_acc" and shared["MAX_RESTARTS"] == "10"
    assert dict(shared, **profiles().read_profile(str(project), "torch")) == before
    assert "# What \"best\" means" in (project / "settings.env").read_text()  # comments stay
    text = (project / "settings.env").read_text()
    with pytest.raises(files.ProjectError, match="this project has profiles"):
        profiles().split_settings(str(project), "torch")
    assert (project / "settings.env").read_text() == text


def test_the_profile_applies_over_settings_env(bake, monkeypatch):
    project = str(bake(cluster="torch", partition="cs"))
    files, prof = module("files"), profiles()
    assert prof.project_settings({}, project) == files.read_settings(project)  # one file: as before profiles
    with pytest.raises(files.ProjectError, match="no profiles/: `expflow profile add`"):
        prof.project_settings({"PROFILE": "torch"}, project)
    prof.split_settings(project, "torch")
    prof.write_profile(project, "greene", {"CLUSTER": "greene", "PARTITION": "a100", "GPU_TYPE": "a100"}, "test")
    assert not prof.write_profile(project, "greene", {"PARTITION": "other"}, "test")  # never over one
    greene = prof.project_settings({"PROFILE": "greene"}, project)
    assert (greene["PARTITION"], greene["GPU_TYPE"], greene["PROFILE"]) == ("a100", "a100", "greene")
    assert greene["PRIMARY_METRIC"] == "val_acc" and greene["PROFILE_CHOICE"] == "PROFILE=greene"
    in_job = prof.project_settings({"SLURM_CLUSTER_NAME": "torch"}, project)  # inside a job, SLURM says
    assert (in_job["PARTITION"], in_job["PROFILE_CHOICE"]) == ("cs", "cluster torch")
    with pytest.raises(files.ProjectError, match=r"PROFILE=nope: there is no profiles/nope.env \(profiles: greene, "
                                                 r"torch\)"):
        prof.project_settings({"PROFILE": "nope"}, project)
    with pytest.raises(files.ProjectError, match=r"no profile for amarel \(cluster amarel\): run `expflow profile "
                                                 r"add` here"):
        prof.project_settings({"SLURM_CLUSTER_NAME": "amarel"}, project)
    with pytest.raises(files.ProjectError, match="PROFILE='../torch'"):
        prof.project_settings({"PROFILE": "../torch"}, project)


def test_the_cluster_is_cached_per_host_and_slurm_conf_for_a_bounded_time(bake, monkeypatch, no_slurm_path):
    project = str(bake())
    prof = profiles()
    monkeypatch.setenv("PATH", no_slurm_path)
    assert prof.cluster_here(project, {}) == ("", "")  # no SLURM here: asked, and not kept
    assert not os.path.exists(prof.cache_path(project, {}))
    now = time.time()
    for age, expected in ((0, "greene"), (prof.CLUSTER_CACHE_SECONDS - 60, "greene"),
                          (prof.CLUSTER_CACHE_SECONDS + 1, ""), (-3600, "")):  # stale, or from the future
        path = prof.cache_path(project, {})
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_text(json.dumps({"cluster": "greene", "epoch": now - age}))
        assert prof.cluster_here(project, {}, now=now)[0] == expected, age
    Path(prof.cache_path(project, {})).write_text(json.dumps({"cluster": "greene", "epoch": now}))
    other_conf = {"SLURM_CONF": "/etc/slurm-other/slurm.conf"}
    assert prof.cache_path(project, other_conf) != prof.cache_path(project, {})
    assert prof.cluster_here(project, other_conf, now=now)[0] == ""
    assert ".expflow/" in (Path(project) / ".gitignore").read_text()  # the cache is this host's, never cloned


def test_a_laptop_gets_the_local_profile(bake, monkeypatch, no_slurm_path, capsys):
    project = bake(cluster="torch", partition="cs", account="torch_pr_68_general")
    monkeypatch.setenv("PATH", no_slurm_path)
    monkeypatch.chdir(project)
    assert main(["profile", "add"]) == 0
    out = capsys.readouterr().out
    assert "moved settings.env's cluster settings (SLURM_ACCOUNTING, MAX_ARRAY_SIZE, ACCOUNT, " in out
    assert "to profiles/torch.env" in out
    assert "[OK] wrote profiles/local.env (no SLURM here)" in out
    local = profiles().read_profile(str(project), "local")
    assert local["PARTITION"] == "" and local["ACCOUNT"] == "" and local["CLUSTER"] == ""
    assert profiles().read_profile(str(project), "torch")["ACCOUNT"] == "torch_pr_68_general"
    assert main(["profile", "add"]) == 0
    assert "profiles/local.env exists already (no SLURM here): left as it is" in capsys.readouterr().out
    assert main(["profile", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith("* local") and listing[1].startswith("  torch ")
    assert "ACCOUNT=torch_pr_68_general, PARTITION=cs" in listing[1]

    env = {"PATH": no_slurm_path}
    out = make(project, "train", "EXP=001", "SET=training.epochs=1", env=env).stdout
    assert "(profile local (no SLURM here); auto: no sbatch on PATH, running here; local)" in out
    out = make(project, "train", "EXP=002", "SET=training.epochs=1", "PROFILE=torch", env=env).stdout
    assert "profile torch (PROFILE=torch)" in out
    intents = {exp: json.loads(next((project / "experiments" / exp / "jobs").glob("*.intent.json")).read_text())
               for exp in ("001", "002")}
    assert (intents["001"]["profile"], intents["001"]["cluster"]) == ("local", "")
    assert intents["002"]["profile"] == "torch"
    wait_for(lambda: all((project / "experiments" / exp / "train_results.json").exists() for exp in ("001", "002")),
             timeout=60, what="both local trainings")
    make(project, "results", env=env)
    assert "cluster" in (project / "results" / "results.csv").read_text().splitlines()[0].split(",")
    out = make(project, "sweep", "SWEEP=configs/sweep-example.yaml", "MAX_PARALLEL=4", env=env).stdout
    assert "tasks of sweep sweep-example as array local-array-" in out and "(profile local (no SLURM here); " in out
    points = sorted((project / "experiments").glob("sweep-example-*/jobs/*.intent.json"))
    assert len(points) == 8 and {json.loads(path.read_text())["profile"] for path in points} == {"local"}
    wait_for(lambda: len(list((project / "experiments").glob("sweep-example-*/train_results.json"))) == 8,
             timeout=180, what="the sweep's 8 points")

    (project / "profiles" / "local.env").unlink()
    result = make(project, "train", "EXP=003", env=env, check=False)
    assert result.returncode != 0
    assert error_line(result) == ("error: no profile for this machine (no SLURM here): run `expflow profile add` "
                                  "here, inside the project, to write profiles/local.env, or choose one for this "
                                  "call with PROFILE=<name> (profiles: torch)")
    assert not (project / "experiments" / "003").exists()  # refused before anything was made
    result = make(project, "status", "PROFILE=../torch", env=env, check=False)
    assert "PROFILE='../torch'" in error_line(result)


def test_profile_add_outside_a_project_is_one_error(tmp_path, monkeypatch, capsys, no_slurm_path):
    monkeypatch.setenv("PATH", no_slurm_path)
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "add"]) == 1
    assert capsys.readouterr().err.strip().endswith("is not an expflow project (no settings.env and "
                                                    "expflow_runtime/): run this inside the project")
    assert not (tmp_path / "profiles").exists()


def write_intent(project: Path, exp: str, entry: str, **fields) -> Path:
    path = project / "experiments" / exp / "jobs" / f"{entry}.intent.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"entry": entry, "stage": "train", **fields}))
    return path


def test_the_0_4_0_migration_records_the_cluster_of_earlier_jobs(bake):
    project = bake(cluster="torch")
    slurm_job = write_intent(project, "001", "a", backend="slurm", job_id="12")
    local_job = write_intent(project, "001", "b", backend="local", job_id="local-x")
    recorded = write_intent(project, "002", "c", backend="slurm", job_id="13", cluster="greene")
    assert migrations.cluster_on_jobs(project, None) == ["experiments/001/jobs/a.intent.json"]  # dry run
    assert "cluster" not in json.loads(slurm_job.read_text())
    backup = Backup(project, "test")
    assert migrations.cluster_on_jobs(project, backup) == ["experiments/001/jobs/a.intent.json"]
    assert json.loads(slurm_job.read_text())["cluster"] == "torch"
    assert "cluster" not in json.loads(local_job.read_text())
    assert json.loads(recorded.read_text())["cluster"] == "greene"
    assert (backup.root / "experiments/001/jobs/a.intent.json").exists()
    assert migrations.cluster_on_jobs(project, backup) == []  # idempotent
    steps = migrations.record_steps("0.3.0", "0.4.0")
    assert [step.migrate for step in steps] == [migrations.cluster_on_jobs]
    assert migrations.record_steps("0.2.0", "0.3.0") == []  # 0.3.0 was released before profiles
    assert migrations.cluster_on_jobs(bake("made-without-slurm", cluster="local"), None) == []


def test_an_update_to_0_4_0_keeps_profiles_and_records_the_cluster(template_0_2, template_0_4, tmp_path,
                                                                   monkeypatch):
    """A 0.2.0 project split into profiles, with a SLURM job from before: the
    update leaves profiles/ and the split settings.env as they are (no moved
    line comes back) and writes the cluster into the job's intent."""
    project = project_0_2(template_0_2, tmp_path, monkeypatch)
    edit(project / "settings.env", "CLUSTER='local'", "CLUSTER='greene'")
    files = module("files")
    before = files.read_settings(str(project))
    profiles().split_settings(str(project), "greene")
    job = write_intent(project, "001", "a", backend="slurm", job_id="12")
    update_project(project, template=template_0_4)
    assert (project / "expflow_runtime" / "VERSION").read_text() == "0.4.0\n"
    shared = files.read_settings(str(project))
    assert set(shared) & set(profiles().PROFILE_KEYS) == {"CLUSTER"}
    assert dict(shared, **profiles().read_profile(str(project), "greene")) == dict(before, PROJECT_NAME="demo")
    assert json.loads(job.read_text())["cluster"] == "greene"


def test_the_gpu_type_warning_names_the_clusters():
    experiment = module("experiment")
    metadata = {"jobs": [{"stage": "train", "backend": "slurm", "job_id": "7", "cluster": "torch",
                          "resources": {"gpu_type": "l40s"}}]}
    assert experiment.gpu_type_change("001", metadata, "eval", {"gpu_type": "a100"}, "greene") == {
        "from": "l40s (torch)", "to": "a100 (greene)", "reference": "its training"}
    assert experiment.gpu_type_change("001", metadata, "eval", {"gpu_type": "a100"}, "torch") == {
        "from": "l40s", "to": "a100", "reference": "its training"}  # one cluster: no names
