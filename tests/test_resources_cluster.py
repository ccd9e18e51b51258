"""The resource advisor on the real test cluster, used as alice would: make
resources, make check, expflow resources, expflow info and scaffold
--check-access, with GPUs occupied by alice's own sleep jobs.

Other users may have jobs on the cluster while these tests run, so expected
numbers come from SLURM itself (scontrol, squeue), read just before and just
after the command under test, and the comparison is made only when the two
readings agree."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import test_slurm_cluster as cluster
from conftest import REPO, metadata, run, wait_for

from expflow.runtime import slurmkit

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

# The product fixtures: expflow installed for alice, her directory, her project
# (scaffolded with --set partition=l40s_public: 1x l40s, 01:00:00).
alice_site = cluster.alice_site
alice_dir = cluster.alice_dir
project = cluster.project
USER = cluster.USER
alice_make = cluster.alice_make
ACCOUNTS = ["torch_pr_68_tandon_advanced", "torch_pr_68_general"]
# sinfo's order (tests/cluster/start.sh): access is checked per account and partition
PARTITIONS = ["cs", "rtx8000", "l40s_public", "h200_tandon", "a100_multi", "preemptible", "priority"]
TEST_ONLY_CALLS = len(ACCOUNTS) * len(PARTITIONS)


def alice_resources(project: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(alice_make(project, "resources", "JSON=1", *args, env=env).stdout)


# ----------------------------------------------------------------- GPUs held by alice's sleep jobs

def job_states(job_ids: list[str]) -> dict[str, str]:
    out = run(["squeue", "--noheader", "--jobs=" + ",".join(job_ids), "--format=%i %T"], cwd=REPO).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def submit_sleep(cwd: Path, *options: str) -> str:
    out = run(["sbatch", "--parsable", "--output=/dev/null", "--time=00:10:00", *options, "--wrap", "sleep 300"],
              cwd=cwd, user=USER).stdout
    return slurmkit.parse_sbatch_parsable(out)


@pytest.fixture
def occupied(alice_dir):
    """Alice holds all 4 l40s GPUs and 3 of the 8 h200 (both jobs running) and
    waits for all 8 h200 (pending); the jobs are cancelled afterwards."""
    jobs: list[str] = []
    try:
        jobs.append(submit_sleep(alice_dir, "-p", "l40s_public", "--gres=gpu:l40s:4"))
        jobs.append(submit_sleep(alice_dir, "-p", "h200_tandon", "--gres=gpu:h200:3",
                                 "-A", "torch_pr_68_tandon_advanced"))
        wait_for(lambda: set(job_states(jobs).values()) == {"RUNNING"}, timeout=120, what="the sleep jobs running")
        jobs.append(submit_sleep(alice_dir, "-p", "h200_tandon", "--gres=gpu:h200:8"))
        yield jobs
    finally:
        subprocess.run(["scancel", *jobs], capture_output=True)


# ----------------------------------------------------------------- what SLURM itself says

def gpus_by_slurm() -> dict[str, tuple[int, int]]:
    """{partition: (GPUs, GPUs allocated)} from `scontrol show node`: the node's
    Gres and its AllocTRES, which is what SLURM allocated."""
    out = run(["scontrol", "show", "node", "--oneliner"], cwd=REPO).stdout
    found: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        fields = slurmkit.parse_scontrol_job(line)
        total = sum(g.count for g in slurmkit.parse_gres(fields.get("Gres", "")) if g.name == "gpu")
        allocated = slurmkit.gpus_from_tres(fields.get("AllocTRES", ""))[1]
        for partition in fields["Partitions"].split(","):
            before = found.get(partition, (0, 0))
            found[partition] = (before[0] + total, before[1] + allocated)
    return found


def queue_by_slurm() -> dict[str, dict[str, int]]:
    """{partition: counts} from squeue: everyone's pending jobs and GPUs, alice's
    running and pending jobs and GPUs (every partition here has one GPU type)."""
    out = run(["squeue", "--noheader", "--all", "--array", "--format=%u %P %T %b %D"], cwd=REPO).stdout
    counts: dict[str, dict[str, int]] = {}
    for line in out.splitlines():
        user, partitions, state, gres, nodes = line.split()
        gpus = int(gres.rsplit(":", 1)[1]) * int(nodes) if gres.startswith("gres:gpu") else 0
        kinds = ["pending"] if state == "PENDING" else []
        if user == USER and state in ("PENDING", "RUNNING"):
            kinds.append("my_" + state.lower())
        for partition in partitions.split(","):
            row = counts.setdefault(partition, {})
            for kind in kinds:
                row[kind + "_jobs"] = row.get(kind + "_jobs", 0) + 1
                row[kind + "_gpus"] = row.get(kind + "_gpus", 0) + gpus
    return counts


def read_while_unchanged(command):
    """(SLURM's view, command()) for a moment when SLURM's view did not change
    while command ran; other users' jobs may start or end meanwhile."""
    for _ in range(10):
        before = (gpus_by_slurm(), queue_by_slurm())
        value = command()
        if (gpus_by_slurm(), queue_by_slurm()) == before:
            return before, value
    pytest.fail("the cluster kept changing while make resources ran")


QUEUE_FIELDS = ("pending_jobs", "pending_gpus", "my_running_jobs", "my_running_gpus", "my_pending_jobs",
                "my_pending_gpus")


def test_make_resources_prints_what_slurm_allocated(project, occupied):
    def both():
        return alice_resources(project), alice_make(project, "resources", env={"COLUMNS": "200"}).stdout

    (gpus, queue), (report, text) = read_while_unchanged(both)
    rows = {row["partition"]: row for row in report["partitions"]}
    assert sorted(rows) == sorted(gpus) and report["user"] == USER  # every partition, none twice
    assert {"cs", "h200_tandon", "l40s_public", "rtx8000", "a100_multi", "preemptible", "priority"} <= set(rows)
    for partition, row in rows.items():
        assert (row["gpus_total"], row["gpus_allocated"]) == gpus[partition], partition
        assert row["gpus_idle"] == gpus[partition][0] - gpus[partition][1], partition
        assert {key: row[key] for key in QUEUE_FIELDS} == {
            key: queue.get(partition, {}).get(key, 0) for key in QUEUE_FIELDS}, partition
    assert (rows["l40s_public"]["gpus_allocated"], rows["l40s_public"]["gpus_idle"]) == (4, 0)  # alice's 4
    assert rows["h200_tandon"]["my_running_gpus"] >= 3 and rows["h200_tandon"]["my_pending_gpus"] >= 8
    for line in text.splitlines()[1:5]:  # the table says the same
        cells = line.split()
        row = rows[cells[0].rstrip("*")]
        assert cells[2:5] == [str(row["gpus_total"]), str(row["gpus_allocated"]), str(row["gpus_idle"])]
        assert cells[6:9] == [f"{row[kind + '_jobs']}/{row[kind + '_gpus']}"
                              for kind in ("pending", "my_running", "my_pending")]


def test_recommendation_picks_a_partition_with_free_gpus(project, occupied, alice_site):
    alice_make(project, "resources", "REFRESH=1")  # writes the access cache (a plain scaffold does not)
    report = alice_resources(project)  # the project's request: 1x l40s, and alice holds all 4
    assert report["recommendation"]["verdict"] == "queue"
    (place,) = report["recommendation"]["partitions"]
    assert place["partition"] == "l40s_public" and place["gpus_idle"] == 0
    assert place["accounts"] == ACCOUNTS  # from the access cache
    report = alice_resources(project, "GPU_TYPE=", "GPUS=2")  # any GPU type
    assert report["recommendation"]["verdict"] == "start_now"
    rows = {row["partition"]: row for row in report["partitions"]}
    places = [place["partition"] for place in report["recommendation"]["partitions"]]
    assert places and "l40s_public" not in places and all(rows[p]["gpus_idle"] >= 2 for p in places)
    out = cluster.expflow_as_alice(alice_site, project, "resources", "--gpu-type", "h200", "--gpus", "5").stdout
    assert "Recommendation for 5x h200, the partition's default time: " in out
    h200 = json.loads(cluster.expflow_as_alice(alice_site, project, "resources", "--gpu-type", "h200", "--gpus", "5",
                                               "--json").stdout)["partitions"][0]
    assert ("can start now on h200_tandon" in out) == (h200["gpus_idle"] >= 5)


def pending_gpus_by_scontrol(partition: str) -> int:
    """Alice's pending GPUs in partition from `scontrol show job`: while a job
    pends, 22.05's TRES= is its request (gres/gpu=N however it was asked for)."""
    out = run(["scontrol", "show", "job", "--oneliner"], cwd=REPO).stdout
    total = 0
    for line in out.splitlines():
        if f" Partition={partition} " in line and " JobState=PENDING " in line and f" UserId={USER}(" in line:
            found = re.search(r"\bTRES=\S*\bgres/gpu=(\d+)", line)
            total += int(found.group(1)) if found else 0
    return total


def test_gpus_asked_per_task_or_per_job_are_in_the_queue(project, alice_dir):
    """--gpus-per-task and --gpus leave squeue's %b empty (N/A): make resources
    must count them all the same (squeue -O tres-alloc, tres-per-job, tres-per-task)."""
    jobs: list[str] = []
    try:
        jobs.append(submit_sleep(alice_dir, "--hold", "-p", "rtx8000", "-n", "2", "--gpus-per-task=1"))
        jobs.append(submit_sleep(alice_dir, "--hold", "-p", "rtx8000", "--gpus=3"))
        for _ in range(10):
            before = pending_gpus_by_scontrol("rtx8000")
            row = next(r for r in alice_resources(project)["partitions"] if r["partition"] == "rtx8000")
            if pending_gpus_by_scontrol("rtx8000") == before:
                break
        assert before >= 5 and row["my_pending_gpus"] == before
    finally:
        subprocess.run(["scancel", *jobs], capture_output=True)


# ----------------------------------------------------------------- the scheduler calls

def calls_of(alice_dir: Path, argv: list[str], cwd: Path, **env: str) -> list[str]:
    """The scheduler commands argv ran, as alice, through recording wrappers."""
    log = alice_dir / "calls.log"
    if not (alice_dir / "bin").exists():
        cluster.recording_wrappers(alice_dir / "bin", log)
    log.write_text("")
    os.chmod(log, 0o666)
    path = f"{alice_dir / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    run(argv, cwd=cwd, env={"PATH": path, **env}, user=USER)
    return sorted(call.split()[0] for call in log.read_text().splitlines())


def test_one_sinfo_and_one_squeue_call_in_all(project, alice_dir, alice_site):
    for args in (["resources"], ["resources", "JSON=1"], ["resources", "EXP=001", "GPUS=2"]):
        assert calls_of(alice_dir, ["make", "-s", *args], project) == ["sinfo", "squeue"], args
    expflow = ["/usr/bin/python3", "-m", "expflow"]
    calls = calls_of(alice_dir, [*expflow, "resources", "--json"], project, PYTHONPATH=str(alice_site))
    assert calls == ["sinfo", "squeue"]
    refresh = calls_of(alice_dir, ["make", "-s", "resources", "REFRESH=1"], project)
    assert refresh == ["sacctmgr"] + ["sbatch"] * TEST_ONLY_CALLS + ["sinfo", "squeue"]


def test_info_in_the_project_checks_access_once_then_reads_the_cache(project, alice_dir, alice_site):
    assert not (project / ".expflow" / "access.json").exists()  # a plain scaffold makes no sbatch call
    expflow = ["/usr/bin/python3", "-m", "expflow", "info"]
    assert calls_of(alice_dir, expflow, project, PYTHONPATH=str(alice_site)).count("sbatch") == TEST_ONLY_CALLS
    access = json.loads((project / ".expflow" / "access.json").read_text())  # written by that info, as alice
    assert access["user"] == USER and [entry["account"] for entry in access["accounts"]] == ACCOUNTS
    assert all((entry["accepted"], entry["refused"], entry["unchecked"]) == (PARTITIONS, {}, {})
               for entry in access["accounts"])
    assert "sbatch" not in calls_of(alice_dir, expflow, project, PYTHONPATH=str(alice_site))
    refreshed = calls_of(alice_dir, [*expflow, "--refresh"], project, PYTHONPATH=str(alice_site))
    assert refreshed.count("sbatch") == TEST_ONLY_CALLS
    out = cluster.expflow_as_alice(alice_site, project, "info").stdout
    assert f"access:           [{project}/.expflow/access.json, checked " in out
    assert f"  torch_pr_68_general            {', '.join(PARTITIONS)}" in out.splitlines()
    assert json.loads((project / ".expflow" / "access.json").read_text())["checked"] >= access["checked"]


# ----------------------------------------------------------------- sbatch --test-only

@pytest.mark.parametrize(
    ("override", "described", "reason"),
    [
        ("GPU_TYPE=h200", "l40s_public, 1x h200, 01:00:00, account torch_pr_68_general",
         "Requested node configuration is not available"),
        ("TIME=3-00:00:00", "l40s_public, 1x l40s, 3-00:00:00, account torch_pr_68_general",
         "Requested time limit is invalid (missing or exceeds some limit)"),
        ("ACCOUNT=no_such_acct", "l40s_public, 1x l40s, 01:00:00, account no_such_acct",
         "Invalid account or account/partition combination specified"),
    ],
)
def test_make_check_reports_slurms_reason(project, override, described, reason):
    result = alice_make(project, "check", "EXP=chk", override, check=False)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].startswith(f"error: SLURM would refuse experiment chk ({described}): {reason}")
    assert f"{override.replace('=', '=' + chr(39))}' from the command line" in result.stderr


def test_make_check_accepts_and_submits_nothing(project):
    alice_make(project, "new", "EXP=ok", "PARTITION=h200_tandon", "GPU_TYPE=h200", "GPUS=2",
               "ACCOUNT=torch_pr_68_tandon_advanced")
    out = alice_make(project, "check", "EXP=ok").stdout.split("\n", 1)[1]  # after the environment's line
    assert out.startswith("[OK] SLURM accepts experiment ok (h200_tandon, 2x h200, 01:00:00, "
                          "account torch_pr_68_tandon_advanced): it would start at ")
    assert out.rstrip().endswith(" on gh001; nothing was submitted")
    assert run(["squeue", "--noheader", "--name=ok-train"], cwd=REPO).stdout == ""
    assert run(["sacct", "--noheader", "-X", "--name=ok-train", "--user", USER], cwd=REPO).stdout.strip() == ""
    assert metadata(project, "ok")["jobs"] == []


def test_scaffold_check_access(alice_site, alice_dir):
    refused = cluster.expflow_as_alice(alice_site, alice_dir, "scaffold", "no", "--no-input", "--check-access",
                                       "--set", "partition=l40s_public", "--set", "time=3-00:00:00", check=False)
    assert refused.returncode == 1 and refused.stderr.splitlines()[-1] == (
        "expflow: error: SLURM refuses account torch_pr_68_general on partition l40s_public with gpu:l40s:1 "
        "for 3-00:00:00: Requested time limit is invalid (missing or exceeds some limit); nothing written")
    assert not (alice_dir / "no").exists()
    accepted = cluster.expflow_as_alice(alice_site, alice_dir, "scaffold", "yes", "--no-input", "--check-access",
                                        "--set", "partition=h200_tandon", "--set", "gpus=2",
                                        "--set", "account=torch_pr_68_tandon_advanced").stdout
    assert accepted.startswith("[OK] SLURM accepts account torch_pr_68_tandon_advanced on partition h200_tandon "
                               "with gpu:h200:2 for 01:00:00 (it would start at ")
    assert (alice_dir / "yes" / ".expflow" / "access.json").is_file()
