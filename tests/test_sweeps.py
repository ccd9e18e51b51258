"""Sweeps: expansion of the sweep file, points as ordinary experiments, the
local backend's bounded array. The cluster path (one sbatch, job arrays,
retry, cancel) is in test_slurm_cluster.py."""

import os
import subprocess

import pytest
from conftest import make, metadata
from test_local_backend import LOCAL, error_line, wait_state

from expflow.runtime import module

GRID = """\
base: configs/default.yaml
set:
  training.seconds_per_epoch: 0.05
grid:
  optimizer.lr: [0.1, 0.3]
  model.depth: [2, 3]
"""


def write_sweep(project, name, text):
    path = project / "configs" / f"{name}.yaml"
    path.write_text(text)
    return f"configs/{name}.yaml"


def test_expansion_rules(tmp_path):
    configs = module("configs")
    sweepspec = module("sweepspec")
    spec = configs.read_yaml_subset(GRID + "zip:\n  training.seed: [1, 2]\n  model.width: [8, 16]\n"
                               "random:\n  samples: 3\n  seed: 7\n  optimizer.momentum:\n    uniform: [0.5, 0.9]\n")
    spec["file"] = "x.yaml"
    points = sweepspec.expand(spec)
    assert len(points) == 2 * 2 * 2 * 3
    assert points[0] == {"model.depth": 2, "optimizer.lr": 0.1, "training.seed": 1, "model.width": 8,
                         "optimizer.momentum": points[0]["optimizer.momentum"]}
    assert points == sweepspec.expand(spec)  # the recorded seed gives the same draws again
    assert all(0.5 <= p["optimizer.momentum"] <= 0.9 for p in points)
    spec["zip"]["model.width"] = [8]
    with pytest.raises(module("files").ProjectError, match="zip: every key needs a list, all of the same length"):
        sweepspec.expand(spec)
    assert sweepspec.point_id("s", 7, 12) == "s-0007" and sweepspec.point_id("s", 7, 12000) == "s-00007"


def test_local_sweep_points_are_ordinary_experiments(bake):
    project = bake()
    sweep_file = write_sweep(project, "lr", GRID)
    out = make(project, "sweep", f"SWEEP={sweep_file}", "MAX_PARALLEL=2", env=LOCAL).stdout
    assert "[OK] submitted 4 train tasks of sweep lr as array local-array-" in out
    for index in range(1, 5):
        wait_state(project, f"lr-{index:04d}", "train", {"COMPLETED"})
    point = metadata(project, "lr-0003")
    assert point["sweep"] == "lr" and point["sweep_index"] == 3
    assert point["sweep_values"] == {"model.depth": 3, "optimizer.lr": 0.1}
    make(project, "results", "FILTER=sweep=lr", "SORT=id")
    assert "| lr-0004 | lr | COMPLETED |" in (project / "results/results.md").read_text()
    status = make(project, "status", "SWEEP=lr").stdout
    assert status.startswith("4 experiments: 4 COMPLETED\n") and status.count("COMPLETED  0") == 4
    again = make(project, "sweep", f"SWEEP={sweep_file}", env=LOCAL).stdout
    assert again.count("already submitted") == 4 and "nothing to submit" in again


def test_identical_completed_config_is_skipped_unless_forced(bake):
    project = bake()
    make(project, "train", "EXP=base", "SET=training.seconds_per_epoch=0.05 optimizer.lr=0.3", env=LOCAL)
    wait_state(project, "base", "train", {"COMPLETED"})
    sweep_file = write_sweep(project, "dup", GRID.replace("  model.depth: [2, 3]\n", ""))
    out = make(project, "sweep", f"SWEEP={sweep_file}", env=LOCAL).stdout
    assert "skipped dup-0002: same config as base, which COMPLETED (FORCE=1 runs it)" in out
    assert (project / "experiments/dup-0001").is_dir() and not (project / "experiments/dup-0002").exists()
    forced = make(project, "sweep", f"SWEEP={sweep_file}", "FORCE=1", env=LOCAL).stdout
    assert "submitted 1 train task of sweep" in forced
    wait_state(project, "dup-0002", "train", {"COMPLETED"})
    wait_state(project, "dup-0001", "train", {"COMPLETED"})


def test_bad_sweep_files_are_one_line_errors(bake):
    project = bake()
    cases = {
        "unknown": ("grids:\n  optimizer.lr: [1]\n", "unknown key grids"),
        "typo": ("grid:\n  optimizer.rate: [1]\n", "unknown config key 'optimizer.rate'"),
        "empty": ("set:\n  training.epochs: 2\n", "no axes: add grid, zip or random"),
        "rule": ("random:\n  samples: 2\n  optimizer.lr:\n    normal: [0, 1]\n", "unknown rule 'normal'"),
    }
    for name, (text, message) in cases.items():
        result = make(project, "sweep", f"SWEEP={write_sweep(project, name, text)}", env=LOCAL, check=False)
        assert message in error_line(result), name
    assert not (project / "experiments").exists() or not any((project / "experiments").iterdir())


def test_changed_sweep_under_the_same_name_is_refused(bake):
    project = bake()
    sweep_file = write_sweep(project, "s", GRID)
    make(project, "sweep", f"SWEEP={sweep_file}", "DRY_RUN=1", env=LOCAL)
    assert not (project / "experiments").exists()
    make(project, "sweep", f"SWEEP={sweep_file}", env=LOCAL)
    write_sweep(project, "s", GRID.replace("0.3]", "0.5]"))
    result = make(project, "sweep", f"SWEEP={sweep_file}", env=LOCAL, check=False)
    assert error_line(result) == "error: s-0002 exists with another config: give the changed sweep a new name"
    for index in range(1, 5):
        wait_state(project, f"s-{index:04d}", "train", {"COMPLETED"})


def test_sweep_resources_reach_every_point(bake):
    project = bake()
    text = GRID + "resources:\n  PARTITION: h200_tandon\n  GPU_TYPE: h200\n  GPUS: 2\n"
    make(project, "sweep", f"SWEEP={write_sweep(project, 'res', text)}", env=LOCAL)
    for index in range(1, 5):
        job = metadata(project, f"res-{index:04d}")["jobs"][0]
        assert (job["resources"]["partition"], job["resources"]["gpu_type"], job["resources"]["gpus"]) == (
            "h200_tandon", "h200", "2")
        wait_state(project, f"res-{index:04d}", "train", {"COMPLETED"})


def test_two_make_sweep_at_once_submit_each_point_once(bake):
    """The sweep's lock: the second make sweep of the same file either waits out
    as busy or finds every point submitted; never a second job for a point."""
    project = bake()
    sweep_file = write_sweep(project, "twice", GRID)
    argv = ["make", "--no-print-directory", "sweep", f"SWEEP={sweep_file}"]
    procs = [subprocess.Popen(argv, cwd=project, env={**os.environ, **LOCAL}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=120) + (proc.returncode,) for proc in procs]
    assert sorted(code for _, _, code in outputs)[0] == 0, outputs
    for out, err, code in outputs:
        assert code == 0 or "is busy" in err, (out, err)
    for index in range(1, 5):
        assert len(metadata(project, f"twice-{index:04d}")["jobs"]) == 1
