"""The pure SLURM parsers, on output recorded from the test cluster
(tests/data/slurm/README.md says how) and on hand-written edge cases."""

import signal
import time

import pytest
from conftest import read_data

from expflow.runtime import slurmkit


def test_sinfo_partitions_recorded():
    partitions = slurmkit.parse_sinfo_partitions(read_data("sinfo-partitions.txt"))
    assert [(p.name, p.default, p.gpu_types, p.gpus_per_node) for p in partitions] == [
        ("cs", True, (), 0),
        ("rtx8000", False, ("rtx8000",), 4),
        ("l40s_public", False, ("l40s",), 4),
        ("h200_tandon", False, ("h200",), 8),
    ]
    assert {p.max_time for p in partitions} == {"2-00:00:00"}
    assert partitions[0].cpus_per_node == 8 and partitions[0].memory_mb == 16000


def test_sinfo_merges_heterogeneous_partition_lines():
    text = (
        "gpu*|up|7-00:00:00|3|48|256000|gpu:a100:4(S:0-1),gpu:v100:2\n"
        "gpu*|up|7-00:00:00|2|64|512000+|gpu:h100:8\n"
        "cpu|down|infinite|10|32|128000|(null)\n"
    )
    gpu, cpu = slurmkit.parse_sinfo_partitions(text)
    assert gpu.name == "gpu" and gpu.default
    assert gpu.gpu_types == ("a100", "v100", "h100")
    assert gpu.nodes == 5 and gpu.gpus_per_node == 8 and gpu.memory_mb == 512000
    assert cpu.gpu_types == () and cpu.gpus_per_node == 0 and cpu.available == "down"


def test_sinfo_rejects_unexpected_shape():
    with pytest.raises(ValueError, match="unexpected sinfo line"):
        slurmkit.parse_sinfo_partitions("PARTITION AVAIL\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(null)", []),
        ("N/A", []),
        ("gpu:4", [("gpu", "", 4)]),
        ("gres:gpu:l40s:1", [("gpu", "l40s", 1)]),
        ("gres/gpu:h200:3", [("gpu", "h200", 3)]),
        ("gpu:a100:4(S:0-1),shard:8", [("gpu", "a100", 4), ("shard", "", 8)]),
        ("gpu:h200:8(IDX:0-2,5)", [("gpu", "h200", 8)]),
    ],
)
def test_parse_gres(text, expected):
    assert [tuple(g) for g in slurmkit.parse_gres(text)] == expected


def test_scontrol_config_recorded():
    config = slurmkit.parse_scontrol_config(read_data("scontrol-show-config.txt"))
    assert config["ClusterName"] == "torch"
    assert config["MaxArraySize"] == "1001"
    assert slurmkit.accounting_enabled(config)
    noacct = slurmkit.parse_scontrol_config(read_data("scontrol-show-config-noacct.txt"))
    assert not slurmkit.accounting_enabled(noacct)


def test_sacctmgr_recorded():
    assert slurmkit.parse_sacctmgr_default_account(read_data("sacctmgr-user-alice.txt")) == "torch_pr_68_general"
    assert slurmkit.parse_sacctmgr_accounts(read_data("sacctmgr-assoc-alice.txt")) == [
        "torch_pr_68_tandon_advanced", "torch_pr_68_general"]
    assert slurmkit.parse_sacctmgr_accounts("") == []
    assert slurmkit.accounting_disabled_message(read_data("sacctmgr-accounting-disabled.err"))
    assert slurmkit.accounting_disabled_message(read_data("sacct-accounting-disabled.err"))
    assert not slurmkit.accounting_disabled_message("sacctmgr: error: Sending PersistInit msg: Connection refused")


def test_sacct_recorded_states():
    jobs = slurmkit.parse_sacct(read_data("sacct-mixed.txt"))
    assert sorted(jobs) == ["4", "5", "6", "7", "8"]
    assert jobs["4"].state == "COMPLETED" and jobs["4"].exit_code == 0
    assert (jobs["4"].gpu_type, jobs["4"].gpus, jobs["4"].node) == ("rtx8000", 1, "gr001")
    assert jobs["5"].state == "FAILED" and jobs["5"].exit_code == 3
    assert jobs["6"].state == "CANCELLED"  # "CANCELLED by 1001"
    assert jobs["7"].state == "RUNNING" and jobs["7"].end == "" and jobs["7"].reason == ""
    assert jobs["8"].state == "PENDING" and jobs["8"].node == "" and jobs["8"].start == ""
    assert jobs["8"].reason == "Dependency"


def test_sacct_skips_step_rows():
    jobs = slurmkit.parse_sacct(read_data("sacct-steps.txt"))
    assert sorted(jobs) == ["4", "5", "6"]
    assert jobs["6"].state == "CANCELLED" and jobs["6"].exit_code == 0  # the .batch step's 0:15 is not used


def test_sacct_recorded_array():
    jobs = slurmkit.parse_sacct(read_data("sacct-array.txt"))
    assert sorted(jobs) == ["9_0", "9_1", "9_2"]
    assert {j.state for j in jobs.values()} == {"COMPLETED"}


def test_squeue_recorded():
    jobs = slurmkit.parse_squeue(read_data("squeue-alice.txt"))
    assert jobs["10"].state == "PENDING" and jobs["10"].reason == "Dependency" and jobs["10"].node == ""
    assert jobs["9"].state == "RUNNING" and jobs["9"].gpu_type == "l40s" and jobs["9"].gpus == 1
    assert slurmkit.parse_squeue(read_data("squeue-noacct.txt"))["2"].partition == "cs"


def test_sbatch_output_recorded():
    assert slurmkit.parse_sbatch_parsable(read_data("sbatch-parsable.txt")) == "15"
    assert slurmkit.parse_sbatch_parsable("42;torch\n") == "42"
    with pytest.raises(ValueError):
        slurmkit.parse_sbatch_parsable("")
    assert slurmkit.sbatch_rejection_reason(read_data("sbatch-reject-account.err")) == (
        "Invalid account or account/partition combination specified")
    assert slurmkit.sbatch_rejection_reason(read_data("sbatch-reject-gres.err")) == (
        "Requested node configuration is not available")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("2-00:00:00", 2880), ("01:00:00", 60), ("30:00", 30), ("45", 45), ("1-12", 2160),
     ("00:00:30", 1), ("UNLIMITED", None), ("infinite", None)],
)
def test_time_to_minutes(text, minutes):
    assert slurmkit.time_to_minutes(text) == minutes


def test_time_formats_round_trip():
    assert slurmkit.time_to_seconds("1-02:03:04") == 93784
    assert slurmkit.format_seconds(93784) == "1-02:03:04"
    assert slurmkit.format_seconds(61) == "00:01:01"
    with pytest.raises(ValueError):
        slurmkit.time_to_minutes("soon")


@pytest.mark.parametrize(
    ("name", "value"),
    [("partition", "cs; rm -rf ~"), ("account", "$(id)"), ("time", "4h"), ("mem", "16 G"),
     ("gpus", "-1"), ("gpu_type", "h200\n--wrap=id"), ("nodes", "0")],
)
def test_check_option_rejects_hostile_values(name, value):
    with pytest.raises(ValueError, match=name.upper()):
        slurmkit.check_option(name, value)


def test_check_option_accepts_real_values():
    assert slurmkit.check_option("time", "1-00:00:00") == "1-00:00:00"
    assert slurmkit.check_option("mem", "16G") == "16G"
    assert slurmkit.check_option("partition", "") == ""
    assert slurmkit.gpu_request("h200", "2") == "gpu:h200:2"
    assert slurmkit.gpu_request("", "1") == "gpu:1"
    assert slurmkit.gpu_request("l40s", "0") == ""


def test_run_command_never_raises(tmp_path):
    missing = slurmkit.run_command(["no-such-command-expflow"])
    assert missing.returncode is None and "not found" in missing.error
    hanging = slurmkit.run_command(["sleep", "5"], timeout=0.2)
    assert hanging.returncode is None and "timed out" in hanging.error
    failing = slurmkit.run_command(["bash", "-c", "echo 'sinfo: error: boom' >&2; exit 1"])
    assert slurmkit.describe_failure(failing) == "bash failed: sinfo: error: boom"


def test_a_ctrl_c_while_a_command_runs_comes_once_it_is_over():
    """The Ctrl-C lands while the command runs (here the command sends it);
    it is raised after the command ended and Python cleaned up its process,
    never inside that cleanup (Popen.__del__), where it would be lost."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as run.py sets it (a CI may ignore it)
    try:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            slurmkit.run_command(["sh", "-c", "kill -INT $PPID; sleep 0.3"])
        assert time.monotonic() - started >= 0.3
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_scontrol_job_recorded():
    fields = slurmkit.parse_scontrol_job(read_data("scontrol-show-job-oneliner.txt"))
    assert fields["JobId"] == "40" and fields["Partition"] == "l40s_public"
    assert slurmkit.gpus_from_tres(fields["TRES"]) == ("l40s", 2)
    assert slurmkit.gpus_from_tres("cpu=1,mem=1G,node=1") == ("", 0)


# ----------------------------------------------------------------- make resources: sinfo nodes, squeue, test-only

def test_sinfo_nodes_recorded_busy():
    nodes = {n.name: n for n in slurmkit.parse_sinfo_nodes(read_data("sinfo-nodes-resources-busy.txt"))}
    assert [n.partition for n in nodes.values()] == ["cs", "h200_tandon", "l40s_public", "rtx8000"]
    assert nodes["cs001"].default and not nodes["gh001"].default
    assert (nodes["cs001"].state, nodes["cs001"].cpus_idle, nodes["cs001"].memory_free_mb) == ("mixed", 4, 11904)
    assert nodes["cs001"].gpus == ()
    assert nodes["gh001"].gpus == (slurmkit.NodeGpus("h200", 8, 3),)
    assert nodes["gl001"].gpus == (slurmkit.NodeGpus("l40s", 4, 2),) and nodes["gl001"].cpus_idle == 6
    assert nodes["gr001"].gpus == (slurmkit.NodeGpus("rtx8000", 4, 0),) and nodes["gr001"].state == "idle"
    assert {(n.available, n.max_time) for n in nodes.values()} == {("up", "2-00:00:00")}


def test_sinfo_nodes_with_another_field_list():
    """The first recording asked for fewer fields: what is missing takes neutral values."""
    fields = ("NodeList", "PartitionName", "StateLong", "Gres", "GresUsed")
    nodes = slurmkit.parse_sinfo_nodes(read_data("sinfo-nodes-gresused-busy.txt"), fields)
    assert [(n.name, n.state, n.gpus) for n in nodes] == [
        ("cs001", "idle", ()),
        ("gh001", "mixed", (slurmkit.NodeGpus("h200", 8, 3),)),
        ("gl001", "mixed", (slurmkit.NodeGpus("l40s", 4, 2),)),
        ("gr001", "idle", (slurmkit.NodeGpus("rtx8000", 4, 0),)),
    ]
    assert {(n.available, n.max_time, n.cpus_idle, n.memory_free_mb) for n in nodes} == {("up", "", None, None)}
    with pytest.raises(ValueError, match="unexpected sinfo line"):
        slurmkit.parse_sinfo_nodes("gh001|h200_tandon|mixed|\n", fields)


def test_sinfo_nodes_edge_cases():
    text = (
        "ga001|gpu*|up|7-00:00:00|drained|0/0/64/64|512000|0|gpu:a100:4(S:0-1),gpu:v100:2|gpu:a100:0(IDX:N/A),gpu:v100:0(IDX:N/A)|\n"
        "ga002|gpu*|up|7-00:00:00|mixed|32/32/0/64|512000|256000|gpu:a100:4(S:0-1),gpu:v100:2|"
        "gpu:a100:3(IDX:0-2),gpu:v100:2(IDX:4-5)|\n"
        "gu001|old|down|infinite|down*|0/0/16/16|64000|0|gpu:2|gpu:0|\n"
        "gu002|old|down|infinite|allocated|16/0/0/16|64000|64000|gpu:2|gpu:2|\n"
        "cn001|cpu|up|1-00:00:00|draining|8/0/8/16|64000|8000|(null)|gpu:0|\n"
    )
    drained, mixed, down, untyped, draining = slurmkit.parse_sinfo_nodes(text)
    assert drained.state == "down"
    assert drained.gpus == (slurmkit.NodeGpus("a100", 4, 0), slurmkit.NodeGpus("v100", 2, 0))
    assert mixed.gpus == (slurmkit.NodeGpus("a100", 4, 3), slurmkit.NodeGpus("v100", 2, 2))
    assert mixed.memory_free_mb == 256000 and mixed.cpus_idle == 32
    assert down.state == "down" and down.available == "down" and down.max_time == "infinite"
    assert untyped.gpus == (slurmkit.NodeGpus("", 2, 2),) and untyped.state == "allocated"
    assert draining.state == "down" and draining.gpus == ()


@pytest.mark.parametrize(
    ("state", "kind"),
    [("idle", "idle"), ("mixed", "mixed"), ("allocated", "allocated"), ("completing", "allocated"),
     ("idle~", "idle"), ("down*", "down"), ("idle*", "down"), ("drained", "down"), ("draining", "down"),
     ("mixed+drain", "down"), ("inval", "down"), ("reserved", "down"), ("maint", "down"), ("", "down"),
     ("planned", "down")],
)
def test_node_state(state, kind):
    assert slurmkit.node_state(state) == kind


# the first recordings asked squeue for --format='%i|%u|%P|%T|%b|%D|%r': these --Format names
PERCENT_FIELDS = ("JobArrayID", "UserName", "Partition", "State", "tres-per-node", "NumNodes", "Reason")


def test_squeue_all_recorded():
    jobs = {job.job_id: job for job in slurmkit.parse_squeue_all(read_data("squeue-all-busy.txt"), PERCENT_FIELDS)}
    assert sorted(jobs) == ["55", "56", "57", "58", "59", "60_0", "60_1", "60_2"]
    assert jobs["56"] == slurmkit.QueuedJob("56", "root", ("cs",), "RUNNING", "", 0, 1, "")
    assert jobs["58"] == slurmkit.QueuedJob("58", "alice", ("h200_tandon",), "PENDING", "h200", 6, 1, "Resources")
    assert jobs["59"].partitions == ("rtx8000", "l40s_public") and (jobs["59"].gpu_type, jobs["59"].gpus) == ("", 1)
    assert jobs["60_1"].reason == "Dependency" and jobs["60_1"].gpus == 1
    older = slurmkit.parse_squeue_all(read_data("squeue-busy.txt"), PERCENT_FIELDS)
    assert [(j.job_id, j.user, j.state, j.gpus) for j in older] == [
        ("5", "alice", "PENDING", 6), ("4", "alice", "RUNNING", 3), ("3", "root", "RUNNING", 2)]


def test_squeue_all_counts_gpus_of_every_node():
    (job,) = slurmkit.parse_squeue_all("7|bob|gpu|RUNNING|gres:gpu:a100:4|2|None\nnot a job line\n", PERCENT_FIELDS)
    assert (job.gpu_type, job.gpus, job.nodes) == ("a100", 8, 2)


def test_sbatch_test_only_recorded():
    assert slurmkit.parse_sbatch_test_only(read_data("sbatch-test-only-ok.err")) == {
        "start": "2026-11-28T17:58:03", "nodes": "gh001", "partition": "h200_tandon"}
    assert slurmkit.parse_sbatch_test_only(read_data("sbatch-test-only-busy.err"))["start"] == "2026-11-28T19:24:34"
    assert slurmkit.parse_sbatch_test_only(read_data("sbatch-test-only-reject.err")) is None
    assert slurmkit.sbatch_test_only_reason(read_data("sbatch-test-only-reject.err")) == (
        "Requested node configuration is not available")
    assert slurmkit.sbatch_test_only_reason(read_data("sbatch-test-only-reject-account.err")) == (
        "Invalid account or account/partition combination specified")
    assert slurmkit.sbatch_test_only_reason(
        "sbatch: error: invalid partition specified: nosuch\nallocation failure: Invalid partition name specified\n"
    ) == "Invalid partition name specified"


@pytest.mark.parametrize(("text", "mb"), [("16G", 16384), ("8000M", 8000), ("8000", 8000), ("1T", 1048576),
                                          ("512K", 1), ("", None), ("lots", None)])
def test_memory_to_mb(text, mb):
    assert slurmkit.memory_to_mb(text) == mb


def test_pending_array_tasks_are_expanded():
    jobs = slurmkit.parse_sacct(read_data("sacct-array-pending.txt"))
    assert sorted(jobs) == ["216_0", "216_1", "216_2", "216_3", "216_4", "216_5"]
    assert jobs["216_0"].state == "RUNNING"
    assert jobs["216_4"].state == "PENDING" and jobs["216_4"].reason == "JobArrayTaskLimit"
    queued = slurmkit.parse_squeue(read_data("squeue-array-pending.txt"))
    assert sorted(queued) == ["194_0", "194_1", "194_2", "194_3", "194_4", "194_5"]
    assert slurmkit.expand_array_id("7_[1,3-4]") == ["7_1", "7_3", "7_4"]
    assert slurmkit.expand_array_id("7_2") == ["7_2"] and slurmkit.expand_array_id("7") == ["7"]


def test_sacct_duplicates_give_a_requeued_job_s_restarts_and_history():
    """`sacct --duplicates`: a row per run of a requeued job, oldest first (recorded
    after `scontrol requeue` of 595 and a node set down under 1209)."""
    jobs = slurmkit.parse_sacct(read_data("sacct-requeued.txt"))
    assert (jobs["595"].state, jobs["595"].restarts, jobs["595"].history) == ("CANCELLED", 1, ("REQUEUED",))
    assert (jobs["1209"].state, jobs["1209"].restarts, jobs["1209"].history) == ("CANCELLED", 1, ("NODE_FAIL",))
    assert jobs["1209"].name == "job.sh"


def test_sacct_exit_code_keeps_the_signal():
    job = slurmkit.parse_sacct(read_data("sacct-signal.txt"))["1355"]
    assert (job.state, job.exit_code) == ("FAILED", "0:9")
    assert slurmkit.parse_exit_code("3:0") == 3 and slurmkit.parse_exit_code("") is None
