"""`expflow update` end to end, from projects of releases 0.1.0 and 0.3.0 to the
bundled template, on the local backend and on the test cluster (as alice).

The project is rendered from tests/data/legacy/ (the 0.1.0 template) with the
answers 0.1.0's scaffold would have given it, and used through its own 0.1.0
make targets until it has a finished experiment (train and eval), a failed one,
one that exited 3, a sweep with a completed and a failed point, and one still
running with its evaluation waiting on it. Its user adds a make target, changes
the command line in scripts/train.sbatch and TIME in settings.env, and commits.
Then `python3 -m expflow update` runs, and the test checks that the edits are
kept, that the old machinery gave way to expflow_runtime/ and the two shims,
that the running jobs end COMPLETED through the shims, that status, results,
resume, sweep-retry, a new sweep and a new experiment work, and that no file of
the experiments or sweeps vanished or shrank.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import test_slurm_cluster
import test_update
from conftest import REPO, TEMPLATE_PROJECT, make, metadata, run, status_rows, wait_for
from test_update import MACHINERY_0_1, legacy_project

import expflow.template
from expflow.legacy_template import SHIMS_DIR
from expflow.template import scaffold

# fixtures shared with the modules that define them; alice_dir cancels only the
# jobs that ran from it (never every job of the user: the cluster may be shared)
legacy_template = test_update.legacy_template
alice_site = test_slurm_cluster.alice_site
alice_dir = test_slurm_cluster.alice_dir
USER = test_slurm_cluster.USER

NEW_VERSION = (TEMPLATE_PROJECT / "expflow_runtime" / "VERSION").read_text().strip()
# a 2-point grid: point 0001 completes, point 0002 crashes at epoch 1 (a resume gets past it)
SWEEP_GRID = "set:\n  training.seconds_per_epoch: 0.2\ngrid:\n  crash_at_epoch: [-1, 1]\n"
SWEEP_MORE = "set:\n  training.seconds_per_epoch: 0.2\ngrid:\n  model.depth: [3, 5]\n"
MY_TARGET = "\n.PHONY: hello\nhello: ## Say hello (a target of mine)\n\t@echo hello from my own target\n"
TRAIN_LINE = 'run_stage train "$1" python3 train.py'
MY_TRAIN_LINE = 'run_stage train "$1" env MY_SETTING=1 python3 train.py --my-note e2e'
MY_TIME = "00:45:00"
# The example's final epoch (4) with lr=0.1, depth=2 (tests/test_local_backend.py).
DONE_METRICS = {"loss": "0.37024", "val_acc": "0.81488", "test_acc": "0.80488"}
BEFORE = {
    ("done", "train"): "COMPLETED", ("done", "eval"): "COMPLETED", ("bad", "train"): "FAILED",
    ("exit3", "train"): "FAILED", ("grid-0001", "train"): "COMPLETED", ("grid-0002", "train"): "FAILED",
}


@dataclass
class Project:
    """A project and who uses it: root on the local backend, alice on the cluster."""

    path: Path
    user: str | None = None

    def make(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return make(self.path, *args, user=self.user, **kwargs)

    def status(self) -> dict[tuple[str, str], dict[str, str]]:
        return status_rows(self.path, user=self.user)

    def write(self, relpath: str, text: str) -> None:
        path = self.path / relpath
        path.write_text(text)
        if self.user:
            shutil.chown(path, self.user, self.user)

    def git(self, *args: str) -> str:
        return run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args], cwd=self.path,
                   user=self.user).stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-qm", message)


def wait_states(project: Project, wanted: dict[tuple[str, str], str], timeout: float = 60) -> dict:
    """Poll `make status` until every (exp, stage) is in its state; the rows."""
    def reached():
        rows = project.status()
        return rows if all(key in rows and rows[key]["STATE"] == state for key, state in wanted.items()) else None
    try:
        return wait_for(reached, timeout=timeout, interval=1, what=f"{wanted}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{project.make('status').stdout}") from None


def transient(name: str) -> bool:
    """A file that lives only while it is written or held: a temp file before its
    rename (train.py's x.tmp, the runtime's .tmp-*) or a submitter's .lock."""
    return name.startswith(".") or name.endswith(".tmp")


def listing(project: Path) -> dict[str, int]:
    """Every file under experiments/ and sweeps/ (checkpoints followed to scratch) with its size."""
    files = {}
    for top in ("experiments", "sweeps"):
        for folder, _, names in os.walk(project / top, followlinks=True):
            for name in (n for n in names if not transient(n)):
                path = Path(folder) / name
                try:
                    files[path.relative_to(project).as_posix()] = path.stat().st_size
                except FileNotFoundError:  # renamed away by a running job meanwhile
                    continue
    return files


def listing_before_update(project: Path) -> dict[str, int]:
    files = listing(project)
    assert {p.split("/")[1] for p in files if p.startswith("experiments/")} == {exp for exp, _ in BEFORE} | {"long"}
    assert "sweeps/grid/sweep.json" in files and "experiments/done/eval_results.json" in files
    return files


def assert_nothing_lost(project: Path, before: dict[str, int], after: dict[str, int]) -> None:
    """No file vanished, none shrank; a checkpoint is rewritten whole at each epoch,
    and a metadata.json shrinks by the jobs update moved into the experiment's
    journal (its backup holds the original: each of those jobs must be there)."""
    lost = sorted(set(before) - set(after))
    assert not lost, f"files lost: {lost}"
    shrunk = {p: (size, after[p]) for p, size in before.items() if after[p] < size and "/checkpoints/" not in p}
    for relpath in [p for p in shrunk if p.endswith("/metadata.json")]:
        original = json.loads(next(project.glob(f".expflow/backup-*/{relpath}")).read_text())
        journal = metadata(project, relpath.split("/")[1])
        assert [job["job_id"] for job in journal["jobs"][:len(original["jobs"])]] == [
            job["job_id"] for job in original["jobs"]], relpath
        assert {k: v for k, v in journal.items() if k != "jobs"} == {k: v for k, v in original.items() if k != "jobs"}
        del shrunk[relpath]
    assert not shrunk, shrunk


def read_results(project: Project) -> dict[str, dict[str, str]]:
    project.make("results")
    with open(project.path / "results" / "results.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def answers_0_1_0(facts: dict, partition: str = "", **overrides: str) -> dict[str, str]:
    """What 0.1.0's scaffold gave cookiecutter (its context.detected_values and
    partition_values) for facts as `expflow info --json` reports them."""
    answers = {
        "cluster": facts["cluster"], "slurm_accounting": "1" if facts["accounting"] else "0",
        "max_array_size": str(facts.get("max_array_size") or 1001), "account": facts.get("default_account", ""),
        "partition": partition, "scratch_root": facts.get("scratch", ""), "env_conda_base": facts.get("conda_base", ""),
        "gpu_type": "", "gpus": "0", "time": "01:00:00",
        "detected_summary": f"cluster {facts['cluster']}, detected {date.today().isoformat()}",
    }
    return {**answers, **overrides}


# ----------------------------------------------------------------- the story, in three parts

def use_with_0_1_0(project: Project) -> dict:
    """Experiments and a sweep through 0.1.0's own make targets, until they end;
    0.1.0's results rows."""
    assert (project.path / "scripts" / "experiment.py").is_file()
    assert not (project.path / "expflow_runtime").exists()
    project.make("train", "EXP=done")
    project.make("eval", "EXP=done")
    project.make("new", "EXP=bad", "SET=crash_at_epoch=2")
    project.make("train", "EXP=bad")
    project.make("new", "EXP=exit3", "SET=fail_with_exit_code=3")
    project.make("train", "EXP=exit3")
    project.write("configs/grid.yaml", SWEEP_GRID)
    out = project.make("sweep", "SWEEP=configs/grid.yaml").stdout
    assert "submitted 2 train tasks of sweep grid" in out
    wait_states(project, BEFORE)
    return read_results(project)


def start_long(project: Project) -> dict:
    """`long` through 0.1.0's make targets, after the edits (the local backend runs
    scripts/train.sbatch itself, which must not change under a running job): its
    training running, its evaluation waiting for it. 0.1.0's status rows."""
    project.make("new", "EXP=long", "SET=training.seconds_per_epoch=1 training.epochs=10")
    project.make("train", "EXP=long")
    project.make("eval", "EXP=long")
    rows = wait_states(project, {("long", "train"): "RUNNING"})
    assert rows[("long", "eval")]["STATE"] == "PENDING"
    assert (rows[("bad", "train")]["EXIT"], rows[("exit3", "train")]["EXIT"]) == ("1", "3")
    return rows


def edit_and_commit(project: Project) -> None:
    """The user's edits: a make target, the training command line, TIME."""
    makefile = (project.path / "Makefile").read_text()
    project.write("Makefile", makefile + MY_TARGET)
    sbatch = (project.path / "scripts" / "train.sbatch").read_text()
    assert sbatch.count(TRAIN_LINE) == 1
    project.write("scripts/train.sbatch", sbatch.replace(TRAIN_LINE, MY_TRAIN_LINE))
    settings = (project.path / "settings.env").read_text()
    assert settings.count("TIME='01:00:00'") == 1
    project.write("settings.env", settings.replace("TIME='01:00:00'", f"TIME='{MY_TIME}'"))
    project.commit("my edits, my sweep")
    assert project.make("hello").stdout == "hello from my own target\n"


def check_update_output(out: str, project: Path) -> None:
    assert out.splitlines()[0] == f"{project}: expflow 0.1.0 -> {NEW_VERSION}", out
    assert out.splitlines()[-1] == f"[OK] {project} is now at expflow {NEW_VERSION}", out
    assert "conflict" not in out and "WARNING" not in out, out
    assert "[OK] Makefile: kept your version, with" in out or "[OK] Makefile: merged your changes" in out, out


def check_files_after_update(project: Path) -> None:
    """The edits are kept; 0.1.0's machinery is gone; the shims and expflow_runtime/ are in place."""
    makefile = (project / "Makefile").read_text()
    assert makefile.endswith(MY_TARGET) and "RUN := trap '' INT; exec $(PYTHON) -I expflow_runtime/run.py" in makefile
    assert "scripts/" not in makefile and "\t@$(RUN) train\n" in makefile
    sbatch = (project / "scripts" / "train.sbatch").read_text()
    assert MY_TRAIN_LINE in sbatch and "  source expflow_runtime/job-lib.sh\n" in sbatch
    assert f"TIME='{MY_TIME}'" in (project / "settings.env").read_text()
    for name in MACHINERY_0_1:
        if name != "jobrecord":
            assert not (project / "scripts" / f"{name}.py").exists(), name
    assert sorted(p.name for p in (project / "scripts").iterdir()) == [
        "eval.sbatch", "job-lib.sh", "jobrecord.py", "train.sbatch"]
    for shim in ("job-lib.sh", "jobrecord.py"):
        assert (project / "scripts" / shim).read_bytes() == (SHIMS_DIR / shim).read_bytes()
    assert (project / "expflow_runtime" / "VERSION").read_text().strip() == NEW_VERSION
    assert (project / "expflow_runtime" / "run.py").is_file()


def use_after_update(project: Project, old_rows: dict, old_results: dict, before: dict[str, int]) -> dict:
    """The running jobs end through the shims; then status, results, resume,
    sweep-retry, a new sweep and a new experiment under the new runtime."""
    rows = project.status()
    for key, state in BEFORE.items():
        assert (rows[key]["STATE"], rows[key]["JOB"], rows[key]["EXIT"]) == (
            state, old_rows[key]["JOB"], old_rows[key]["EXIT"]), key
    assert (rows[("long", "train")]["STATE"], rows[("long", "eval")]["STATE"]) == ("RUNNING", "PENDING")
    rows = wait_states(project, {("long", "train"): "COMPLETED", ("long", "eval"): "COMPLETED"})
    for stage in ("train", "eval"):  # the ends the jobs recorded themselves, through the shims
        assert rows[("long", stage)]["EXIT"] == "0"
        path = project.path / "experiments" / "long" / "runs" / f"{stage}-{rows[('long', stage)]['JOB']}.json"
        record = json.loads(path.read_text())
        assert (record["state"], record["exit_code"]) == ("COMPLETED", 0)
    assert_nothing_lost(project.path, before, listing(project.path))
    long_log = project.make("logs", "EXP=long").stdout
    assert "epoch 9:" in long_log and "attempt 1" in long_log

    results = read_results(project)
    assert {exp for exp, _ in BEFORE} | {"long"} <= set(results)
    for exp in ("done", "bad", "exit3", "grid-0001", "grid-0002"):
        for column in ("state", "exit_code", "eval_state", "val_acc", "test_acc", "job_id", "sweep"):
            assert results[exp][column] == old_results[exp][column], (exp, column)
    assert {k: results["done"][k] for k in DONE_METRICS} == DONE_METRICS
    assert (results["long"]["state"], results["long"]["eval_state"]) == ("COMPLETED", "COMPLETED")
    assert results["long"]["test_acc"] and results["long"]["epochs"] == "10"
    assert project.make("report").stdout.startswith("[OK] results/report.html")  # the new report, on old records
    page = (project.path / "results" / "report.html").read_text()
    report = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    assert {"done", "exit3", "long", "grid-0001"} <= {row[0] for row in report["rows"]}
    assert ("exit3", "3") in {(f["id"], f["exit_code"]) for f in report["overview"]["failures"]}

    project.commit("expflow update")  # as its output asks
    assert "hello from my own target" in project.make("hello").stdout
    project.make("resume", "EXP=bad")
    out = project.make("sweep-retry", "SWEEP=configs/grid.yaml").stdout
    assert "retrying grid-0002 (FAILED)" in out and "submitted 1 train task of sweep grid" in out
    project.write("configs/more.yaml", SWEEP_MORE)
    assert "submitted 2 train tasks of sweep more" in project.make("sweep", "SWEEP=configs/more.yaml").stdout
    project.make("train", "EXP=new1", "DESC=costs $5 total")  # the updated Makefile keeps a $ as typed
    assert json.loads((project.path / "experiments/new1/metadata.json").read_text())["description"] == "costs $5 total"
    done = {(exp, "train"): "COMPLETED" for exp in ("bad", "grid-0002", "more-0001", "more-0002", "new1")}
    rows = wait_states(project, done, timeout=90)
    assert rows[("bad", "train")]["JOB"] != old_rows[("bad", "train")]["JOB"]
    for exp, epoch in (("bad", 2), ("grid-0002", 1)):
        assert f"resuming at epoch {epoch} (attempt 2)" in project.make("logs", f"EXP={exp}").stdout, exp
    results = read_results(project)
    assert {"done", "bad", "exit3", "long", "grid-0001", "grid-0002", "more-0001", "more-0002", "new1"} <= set(
        results)
    assert results["bad"]["state"] == "COMPLETED" and results["new1"]["val_acc"] == DONE_METRICS["val_acc"]
    assert {results[f"more-000{i}"]["model.depth"] for i in (1, 2)} == {"3", "5"}
    assert {k: results["done"][k] for k in DONE_METRICS} == DONE_METRICS
    assert_nothing_lost(project.path, before, listing(project.path))
    return rows


# ----------------------------------------------------------------- the local backend

def test_update_of_a_used_0_1_0_project_on_the_local_backend(legacy_template, tmp_path):
    facts = {"cluster": socket.gethostname(), "accounting": False}  # 0.1.0's detection without SLURM
    answers = answers_0_1_0(facts, project_name="old-local", project_slug="old-local", backend="local")
    project = Project(legacy_project(legacy_template, tmp_path, **answers))
    assert "BACKEND='local'" in (project.path / "settings.env").read_text()
    old_results = use_with_0_1_0(project)
    edit_and_commit(project)
    old_rows = start_long(project)
    before = listing_before_update(project.path)

    out = run(["python3", "-m", "expflow", "update", str(project.path)], cwd=REPO).stdout

    check_update_output(out, project.path)
    check_files_after_update(project.path)
    use_after_update(project, old_rows, old_results, before)


# ----------------------------------------------------------------- the test cluster

@pytest.mark.slurm
def test_update_of_a_used_0_1_0_project_on_the_cluster(slurm_cluster, legacy_template, alice_site, alice_dir):
    facts = json.loads(test_slurm_cluster.expflow_as_alice(alice_site, alice_dir, "info", "--json").stdout)
    assert facts["default_account"] and facts["scratch"] == f"/scratch/{USER}"
    name = alice_dir.name  # the project's scratch folder /scratch/alice/<name>/ is its own
    answers = answers_0_1_0(facts, "cs", project_name=name, project_slug=name, backend="slurm")
    path = legacy_project(legacy_template, alice_dir, use_git=False, **answers)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(path)], check=True)
    project = Project(path, USER)
    project.git("init", "-q")
    project.commit("generated by expflow 0.1.0")
    settings = (path / "settings.env").read_text()
    assert "PARTITION='cs'" in settings and f"ACCOUNT='{facts['default_account']}'" in settings
    old_results = use_with_0_1_0(project)
    edit_and_commit(project)
    old_rows = start_long(project)
    assert old_rows[("done", "train")]["PARTITION"] == "cs"
    before = listing_before_update(path)

    out = test_slurm_cluster.expflow_as_alice(alice_site, alice_dir, "update", str(path)).stdout

    check_update_output(out, path)
    check_files_after_update(path)
    assert not [p for p in path.rglob("*") if p.owner() != USER and ".git" not in p.parts]
    rows = use_after_update(project, old_rows, old_results, before)
    assert rows[("new1", "train")]["PARTITION"] == "cs"
    limit = wait_for(lambda: run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=TimeLimit",
                                  "--jobs", rows[("new1", "train")]["JOB"]], cwd=path).stdout.strip(),
                     what="accounting to show new1")  # sacct lags sbatch by a moment
    assert limit == MY_TIME  # the edited settings.env reaches the new runtime's sbatch
    results = read_results(project)
    assert (results["done"]["partition"], results["done"]["account"]) == ("cs", facts["default_account"])
    checkpoints = path / "experiments" / "long" / "checkpoints"
    assert os.readlink(checkpoints) == f"/scratch/{USER}/{name}/checkpoints/long"


# ----------------------------------------------------------------- from the 0.3.0 release

release_0_3_0 = test_update.release_0_3_0
BEFORE_0_3 = {("done", "train"): "COMPLETED", ("bad", "train"): "FAILED"}


def project_0_3_0(template: Path, where: Path, monkeypatch: pytest.MonkeyPatch, **answers: str) -> Path:
    """A project of the real 0.3.0 release, as expflow's scaffold renders and records it."""
    monkeypatch.setattr(expflow.template, "template_dir", lambda: template)
    path = scaffold({**test_update.ANSWERS, **answers}, where)
    assert (path / "expflow_runtime" / "VERSION").read_text() == "0.3.0\n"
    return path


def use_with_0_3_0(project: Project) -> tuple[dict, dict]:
    """Through 0.3.0's own make targets: a finished experiment and a failed one,
    the user's own make target, then `long` still training. 0.3.0's results and
    status rows."""
    project.make("train", "EXP=done")
    project.make("new", "EXP=bad", "SET=crash_at_epoch=2")
    project.make("train", "EXP=bad")
    wait_states(project, BEFORE_0_3)
    old_results = read_results(project)
    project.write("Makefile", (project.path / "Makefile").read_text() + MY_TARGET)
    project.commit("my target")
    project.make("new", "EXP=long", "SET=training.seconds_per_epoch=1 training.epochs=10")
    project.make("train", "EXP=long")
    return old_results, wait_states(project, {("long", "train"): "RUNNING"})


def use_after_0_3_0_update(project: Project, out: str, old_results: dict, old_rows: dict,
                           before: dict[str, int]) -> dict:
    """The update kept the user's target and brought the harvest index; the job
    that ran across it ends COMPLETED through the new runtime; status, results
    and a new experiment work on 0.3.0's records."""
    assert out.splitlines()[0] == f"{project.path}: expflow 0.3.0 -> {NEW_VERSION}", out
    assert out.splitlines()[-1] == f"[OK] {project.path} is now at expflow {NEW_VERSION}", out
    assert "conflict" not in out and "WARNING" not in out, out
    assert (project.path / "Makefile").read_text().endswith(MY_TARGET)
    assert (project.path / "expflow_runtime" / "VERSION").read_text().strip() == NEW_VERSION
    rows = project.status()
    for key, state in BEFORE_0_3.items():
        assert (rows[key]["STATE"], rows[key]["JOB"], rows[key]["EXIT"]) == (
            state, old_rows[key]["JOB"], old_rows[key]["EXIT"]), key
    rows = wait_states(project, {("long", "train"): "COMPLETED"})
    record = json.loads((project.path / "experiments" / "long" / "runs" /
                         f"train-{rows[('long', 'train')]['JOB']}.json").read_text())
    assert (record["state"], record["exit_code"], rows[("long", "train")]["EXIT"]) == ("COMPLETED", 0, "0")
    results = read_results(project)
    for exp in ("done", "bad"):
        for column in ("state", "exit_code", "loss", "val_acc", "job_id"):
            assert results[exp][column] == old_results[exp][column], (exp, column)
    assert (results["long"]["state"], results["long"]["epochs"]) == ("COMPLETED", "10")
    assert (project.path / ".expflow" / "harvest.index").is_file()  # 0.4.0's harvest, on 0.3.0's records
    project.commit("expflow update")
    assert project.make("hello").stdout == "hello from my own target\n"
    project.make("train", "EXP=new1")
    rows = wait_states(project, {("new1", "train"): "COMPLETED"})
    assert read_results(project)["new1"]["val_acc"] == DONE_METRICS["val_acc"]
    assert_nothing_lost(project.path, before, listing(project.path))
    return rows


def test_update_of_a_used_0_3_0_project_on_the_local_backend(release_0_3_0, tmp_path, monkeypatch):
    project = Project(project_0_3_0(release_0_3_0, tmp_path, monkeypatch, project_slug="old-local"))
    project.git("init", "-q")
    project.commit("generated by expflow 0.3.0")
    old_results, old_rows = use_with_0_3_0(project)
    before = listing(project.path)

    out = run(["python3", "-m", "expflow", "update", str(project.path)], cwd=REPO).stdout

    use_after_0_3_0_update(project, out, old_results, old_rows, before)


@pytest.mark.slurm
def test_update_of_a_used_0_3_0_project_on_the_cluster(slurm_cluster, release_0_3_0, alice_site, alice_dir,
                                                       monkeypatch):
    """As on the local backend, with SLURM jobs, one running across the update,
    which records in each job's intent the cluster it ran on (0.4.0's record
    migration: 0.3.0 recorded none)."""
    facts = json.loads(test_slurm_cluster.expflow_as_alice(alice_site, alice_dir, "info", "--json").stdout)
    name = alice_dir.name  # the project's scratch folder /scratch/alice/<name>/ is its own
    answers = answers_0_1_0(facts, "cs", project_name=name, project_slug=name, backend="slurm")
    path = project_0_3_0(release_0_3_0, alice_dir, monkeypatch, **answers)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(path)], check=True)
    project = Project(path, USER)
    project.git("init", "-q")
    project.commit("generated by expflow 0.3.0")
    old_results, old_rows = use_with_0_3_0(project)
    intents = sorted(path.glob("experiments/*/jobs/*.intent.json"))
    assert len(intents) == 3 and not any("cluster" in json.loads(p.read_text()) for p in intents)
    before = listing(path)

    out = test_slurm_cluster.expflow_as_alice(alice_site, alice_dir, "update", str(path)).stdout

    assert "[OK] records 0.3.0 -> 0.4.0 (each SLURM job records its cluster" in out, out
    assert [json.loads(p.read_text())["cluster"] for p in intents] == [facts["cluster"]] * 3
    rows = use_after_0_3_0_update(project, out, old_results, old_rows, before)
    assert rows[("new1", "train")]["PARTITION"] == "cs"
    assert not [p for p in path.rglob("*") if p.owner() != USER and ".git" not in p.parts]
