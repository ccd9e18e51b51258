"""scripts/resources.py (make resources, make check, and expflow's resources and
access checks): its pure functions on recorded output, and the make targets with
recorded scheduler output on PATH. The real cluster: test_resources_cluster.py."""

import json
import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO, make, read_data
from test_detect import fake_command

from expflow.runtime import module, slurmkit

advice = module("advice")


@pytest.fixture
def busy():
    """(nodes, jobs) while the GPUs were partly busy (tests/data/slurm/README.md)."""
    return (slurmkit.parse_sinfo_nodes(read_data("sinfo-nodes-resources-busy.txt")),
            slurmkit.parse_squeue_all(read_data("squeue-all-busy.txt"), PERCENT_FIELDS))


# squeue-all-busy.txt was recorded with --format='%i|%u|%P|%T|%b|%D|%r': these --Format names
PERCENT_FIELDS = ("JobArrayID", "UserName", "Partition", "State", "tres-per-node", "NumNodes", "Reason")


def rows_by_partition(report):
    return {row["partition"]: row for row in report["partitions"]}


def report_for(busy, user="alice", access=None, **request):
    """As expflow resources does it: partition and gpu_type are the request's and narrow the table."""
    nodes, jobs = busy
    return advice.build_report(nodes, jobs, user, advice.make_request(request, request.get("partition", "")),
                                  access, request.get("gpu_type", ""))


ACCESS = {"user": "alice", "checked": "2026-11-28T18:00:00+00:00", "accounts": [
    {"account": "general", "accepted": ["cs", "rtx8000", "l40s_public"], "refused": {"h200_tandon": "Invalid account"}},
    {"account": "tandon", "accepted": ["cs", "h200_tandon"], "refused": {}},
]}


# ----------------------------------------------------------------- the table

def test_counts_are_slurms_allocation_and_the_queue(busy):
    rows = rows_by_partition(report_for(busy, gpus="1"))
    h200 = rows["h200_tandon"]
    assert (h200["gpu_type"], h200["gpus_total"], h200["gpus_allocated"], h200["gpus_idle"]) == ("h200", 8, 3, 5)
    assert (h200["nodes_idle"], h200["nodes_mixed"], h200["nodes_allocated"], h200["nodes_down"]) == (0, 1, 0, 0)
    assert (h200["pending_jobs"], h200["pending_gpus"]) == (1, 6)
    assert (h200["my_running_jobs"], h200["my_running_gpus"], h200["my_pending_jobs"], h200["my_pending_gpus"]) == (
        1, 3, 1, 6)
    # job 59 (untyped gpu:1) pends in rtx8000 and l40s_public; job 60 is three array tasks
    assert (rows["rtx8000"]["pending_jobs"], rows["rtx8000"]["pending_gpus"]) == (4, 4)
    assert (rows["l40s_public"]["pending_jobs"], rows["l40s_public"]["gpus_allocated"]) == (1, 2)
    assert rows["l40s_public"]["my_running_jobs"] == 0  # root's job
    assert rows["cs"]["default"] and rows["cs"]["gpu_type"] == "" and rows["cs"]["gpus_total"] == 0


def test_the_users_own_jobs_are_the_users(busy):
    rows = rows_by_partition(report_for(busy, user="root", gpus="1"))
    assert (rows["l40s_public"]["my_running_jobs"], rows["l40s_public"]["my_running_gpus"]) == (1, 2)
    assert (rows["cs"]["my_running_jobs"], rows["cs"]["my_running_gpus"]) == (1, 0)
    assert rows["h200_tandon"]["my_running_jobs"] == rows["h200_tandon"]["my_pending_jobs"] == 0


def test_filters_narrow_the_table(busy):
    assert [r["partition"] for r in report_for(busy, gpu_type="l40s", gpus="1")["partitions"]] == ["l40s_public"]
    assert [r["partition"] for r in report_for(busy, partition="cs", gpus="0")["partitions"]] == ["cs"]
    assert report_for(busy, gpu_type="a100", gpus="1")["partitions"] == []


def test_several_gpu_types_down_and_drained_nodes():
    nodes = slurmkit.parse_sinfo_nodes(
        "ga001|gpu|up|7-00:00:00|mixed|8/24/0/32|256000|64000|gpu:a100:4,gpu:v100:2|gpu:a100:1,gpu:v100:2|\n"
        "ga002|gpu|up|7-00:00:00|drained|0/0/32/32|256000|0|gpu:a100:4|gpu:a100:0|\n"
        "ga003|gpu|up|7-00:00:00|down*|0/0/32/32|256000|0|gpu:a100:4|gpu:a100:0|\n"
        "cn001|gpu|up|7-00:00:00|idle|0/32/0/32|256000|0|(null)|gpu:0|\n"
    )
    jobs = slurmkit.parse_squeue_all(
        "1|bob|gpu|PENDING|gres:gpu:2|1|Priority\n"          # untyped: the first GPU type
        "2|bob|gpu|PENDING|N/A|1|Priority\n"                 # no GPU: the GPU-less nodes
        "3|bob|gpu|PENDING|gres:gpu:v100:1|1|Resources\n", PERCENT_FIELDS
    )
    rows = advice.table_rows(nodes, jobs, "alice", None)
    assert [(r["gpu_type"], r["gpus_total"], r["gpus_allocated"], r["gpus_idle"]) for r in rows] == [
        ("a100", 12, 1, 3), ("v100", 2, 2, 0), ("", 0, 0, 0)]
    assert [(r["nodes_idle"], r["nodes_mixed"], r["nodes_down"]) for r in rows] == [(0, 1, 2), (0, 1, 0), (1, 0, 0)]
    assert [(r["pending_jobs"], r["pending_gpus"]) for r in rows] == [(1, 2), (1, 1), (1, 0)]
    verdicts = [advice.recommend(rows, nodes, advice.make_request({"gpu_type": "a100", "gpus": gpus}))["verdict"]
                for gpus in ("3", "4", "5")]
    assert verdicts == ["start_now", "queue", "none"]  # only ga001 takes jobs: 4 a100, 1 in use


def test_unknown_queue_is_not_zero(busy):
    nodes, _ = busy
    report = advice.build_report(nodes, None, "alice", advice.make_request({"gpus": "1"}), None,
                                    warnings=["squeue did not answer"])
    assert {r["pending_jobs"] for r in report["partitions"]} == {None}
    text = advice.render_text(report, 200)
    assert re.search(r"^h200_tandon +h200 +8 +3 +5 +0/1/0/0 +\? +\? +\?", text, re.M)
    assert report["warnings"] == ["squeue did not answer"]


# ----------------------------------------------------------------- the recommendation

@pytest.mark.parametrize(
    ("request_values", "verdict", "partitions"),
    [
        ({"gpu_type": "h200", "gpus": "5"}, "start_now", ["h200_tandon"]),
        ({"gpu_type": "h200", "gpus": "6"}, "queue", ["h200_tandon"]),   # 5 idle: it waits
        ({"gpu_type": "h200", "gpus": "9"}, "none", []),                 # no node has 9
        ({"gpus": "3"}, "start_now", ["h200_tandon", "rtx8000"]),       # any type, most idle first
        ({"gpus": "1"}, "start_now", ["h200_tandon", "rtx8000", "l40s_public"]),
        ({"gpu_type": "l40s", "gpus": "1", "time": "3-00:00:00"}, "none", []),  # over the 2-day limit
        ({"gpu_type": "l40s", "gpus": "1", "cpus": "7"}, "queue", ["l40s_public"]),  # 6 CPUs idle on gl001
        ({"gpu_type": "rtx8000", "gpus": "1", "mem": "16G"}, "queue", ["rtx8000"]),  # 16000 MB on the node
        ({"gpus": "0", "cpus": "4"}, "start_now", ["cs"]),              # no GPU: GPU-less partitions only
        ({"gpus": "2", "partition": "l40s_public"}, "start_now", ["l40s_public"]),
    ],
)
def test_recommendation(busy, request_values, verdict, partitions):
    recommendation = report_for(busy, **request_values)["recommendation"]
    assert recommendation["verdict"] == verdict
    assert [place["partition"] for place in recommendation["partitions"]] == partitions


def test_recommendation_queues_where_fewest_gpus_wait(busy):
    nodes, jobs = busy
    full = [n._replace(gpus=tuple(g._replace(used=g.total) for g in n.gpus)) for n in nodes]
    rows = advice.table_rows(full, jobs, "alice", None)
    recommendation = advice.recommend(rows, full, advice.make_request({"gpus": "1"}))
    assert recommendation["verdict"] == "queue"
    assert recommendation["partitions"][0]["partition"] == "l40s_public"  # 1 GPU pending, against 4 and 6


def test_recommendation_names_the_accounts_and_skips_partitions_none_may_use(busy):
    recommendation = report_for(busy, access=ACCESS, gpus="1")["recommendation"]
    assert [(p["partition"], p["accounts"]) for p in recommendation["partitions"]] == [
        ("h200_tandon", ["tandon"]), ("rtx8000", ["general"]), ("l40s_public", ["general"])]
    nobody = {**ACCESS, "accounts": [{"account": "general", "accepted": ["cs"], "refused": {"h200_tandon": "no"}}]}
    assert report_for(busy, access=nobody, gpu_type="h200", gpus="1")["recommendation"]["verdict"] == "none"
    never_asked = {**ACCESS, "accounts": [{"account": "general", "accepted": ["cs"], "refused": {}}]}
    place = report_for(busy, access=never_asked, gpu_type="h200", gpus="1")["recommendation"]["partitions"][0]
    assert (place["partition"], place["accounts"]) == ("h200_tandon", None)  # not known, so not ruled out


def test_recommendation_line(busy):
    line = advice.recommendation_line(report_for(busy, gpu_type="h200", gpus="6", time="01:00:00"), ": REFRESH=1")
    assert line == ("Recommendation for 6x h200, 01:00:00: nothing is free now; fewest GPUs queued ahead on "
                    "h200_tandon (idle h200: 5, GPUs queued: 6); accounts not checked: REFRESH=1")
    line = advice.recommendation_line(report_for(busy, access=ACCESS, gpus="0"))
    assert line == ("Recommendation for no GPU, the partition's default time: can start now on "
                    "cs (jobs pending: 0, accounts: general, tandon)")


# ----------------------------------------------------------------- output

def documented_json_fields():
    """The field names of the `expflow resources --json` tables in docs/reference.md."""
    reference = (REPO / "docs" / "reference.md").read_text()
    section = reference.split("### `--json` of `expflow resources` and `make resources`", 1)[1].split("\n## ", 1)[0]
    tables = re.split(r"\n\n(?=\| field)", section)
    return [re.findall(r"^\| `([a-z_]+)`", table, re.M) for table in tables if table.startswith("| field")]


def test_json_keys_are_stable_and_documented(busy):
    report = report_for(busy, access=ACCESS, gpus="1")
    top, row, recommendation, place = documented_json_fields()
    decoded = json.loads(advice.render_json(report))
    assert list(decoded) == top
    assert list(decoded["request"]) == ["partition", "gpu_type", "gpus", "nodes", "cpus", "mem", "time"]
    assert all(list(r) == row for r in decoded["partitions"])
    assert list(decoded["recommendation"]) == recommendation
    assert all(list(p) == place for p in decoded["recommendation"]["partitions"])


def test_text_table(busy):
    text = advice.render_text(report_for(busy, user="root", gpus="1"), 200)
    lines = text.splitlines()
    assert lines[0].split() == advice.HEADER
    assert lines[1].split() == ["cs*", "-", "0", "0", "0", "0/1/0/0", "0/0", "1/0", "0/0", "2-00:00:00"]
    assert lines[3].split() == ["l40s_public", "l40s", "4", "2", "2", "0/1/0/0", "1/1", "1/2", "0/0", "2-00:00:00"]
    assert lines[5] == advice.LEGEND and lines[6].startswith("Recommendation for 1x any GPU")
    narrow = advice.render_text(report_for(busy, gpus="1"), 40)
    assert "more columns: " in narrow


# ----------------------------------------------------------------- access

def fake_test_only(refuse):
    """A run() for probe_access: refuses (account, partition) pairs in refuse."""
    calls = []

    def run(argv, timeout):
        calls.append(argv)
        options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
        if (options.get("account", ""), options["partition"]) in refuse:
            return slurmkit.CommandResult(argv, 1, "", read_data("sbatch-test-only-reject-account.err"), "")
        if options["partition"] == "slow":
            return slurmkit.CommandResult(argv, None, "", "", "sbatch timed out after 10s")
        return slurmkit.CommandResult(argv, 0, "", read_data("sbatch-test-only-ok.err"), "")

    return run, calls


def test_probe_access_checks_every_account_and_partition():
    run, calls = fake_test_only({("general", "h200_tandon")})
    access = advice.probe_access("alice", ["general", "tandon"], ["cs", "h200_tandon", "slow"], run=run)
    assert access["user"] == "alice" and access["checked"] and access["cluster"] == ""
    timed_out = {"slow": "could not check: sbatch timed out after 10s"}
    assert access["accounts"] == [
        {"account": "general", "accepted": ["cs"], "unchecked": timed_out,
         "refused": {"h200_tandon": "Invalid account or account/partition combination specified"}},
        {"account": "tandon", "accepted": ["cs", "h200_tandon"], "refused": {}, "unchecked": timed_out},
    ]
    assert len(calls) == 6
    assert all(argv[:2] == ["sbatch", "--test-only"] and argv[-1] == "--wrap=true" for argv in calls)
    assert "--time=00:01:00" in calls[0] and "--account=general" in calls[0] and "--partition=cs" in calls[0]
    assert advice.accounts_for(access, "h200_tandon") == ["tandon"]
    assert advice.accounts_for(access, "slow") is None  # not known: not the same as refused
    assert advice.accounts_for(access, "gone") is None  # never asked (added since, or another cluster's)
    assert advice.accounts_for(None, "cs") is None
    refuse_all, _ = fake_test_only({("general", "h200_tandon")})
    refused = advice.probe_access("alice", ["general"], ["h200_tandon"], run=refuse_all)
    assert advice.accounts_for(refused, "h200_tandon") == []


def test_probe_access_without_accounts_uses_the_default():
    run, calls = fake_test_only(set())
    access = advice.probe_access("alice", [], ["cs"], run=run)
    assert access["accounts"] == [{"account": "", "accepted": ["cs"], "refused": {}, "unchecked": {}}]
    assert not any(arg.startswith("--account") for arg in calls[0])


def test_access_cache_is_per_user_and_cluster(tmp_path):
    advice.write_access(str(tmp_path), ACCESS)  # written before 0.4.0: no cluster named
    assert advice.read_access(str(tmp_path), "alice") == ACCESS
    assert advice.read_access(str(tmp_path), "alice", "torch") == ACCESS
    assert advice.read_access(str(tmp_path), "bob") is None
    advice.write_access(str(tmp_path), {**ACCESS, "cluster": "torch"})
    assert advice.read_access(str(tmp_path), "alice", "torch")["cluster"] == "torch"
    assert advice.read_access(str(tmp_path), "alice", "greene") is None  # a home both clusters share
    assert advice.read_access(str(tmp_path), "alice")["cluster"] == "torch"  # no cluster known: the partitions tell
    (tmp_path / ".expflow" / "access.json").write_text("{not json")
    assert advice.read_access(str(tmp_path), "alice") is None


def test_check_outcome():
    ok = advice.check_outcome(slurmkit.CommandResult([], 0, "", read_data("sbatch-test-only-busy.err"), ""))
    assert ok == {"ok": True, "reason": "", "start": "2026-11-28T19:24:34", "nodes": "gh001",
                  "partition": "h200_tandon"}
    refused = advice.check_outcome(slurmkit.CommandResult([], 1, "", read_data("sbatch-test-only-reject.err"), ""))
    assert not refused["ok"] and refused["reason"] == "Requested node configuration is not available"


# ----------------------------------------------------------------- make resources and make check

@pytest.fixture
def recorded_bin(tmp_path):
    """sinfo and squeue printing the recorded busy cluster; sbatch logging its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_command(bin_dir, "sinfo", stdout="sinfo-nodes-resources-busy.txt")
    fake_command(bin_dir, "squeue", stdout="squeue-all-format-busy.txt")
    fake_command(bin_dir, "sacctmgr", stdout="sacctmgr-assoc-alice.txt")
    return bin_dir


def logging_sbatch(bin_dir: Path, log: Path, refuse: str = "") -> None:
    """sbatch that writes its arguments, one a line, and refuses when an argument is refuse."""
    script = bin_dir / "sbatch"
    script.write_text(
        "#!/bin/bash\n"
        f"printf '%s\\n' \"$@\" > '{log}'\n"
        f"for arg in \"$@\"; do [[ \"$arg\" == '{refuse}' ]] && {{ cat '{REPO}/tests/data/slurm/"
        "sbatch-test-only-reject.err' >&2; exit 1; }; done\n"
        f"cat '{REPO}/tests/data/slurm/sbatch-test-only-ok.err' >&2\n"
    )
    script.chmod(0o755)


def path_env(bin_dir, **extra):
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "COLUMNS": "200", **extra}


def test_make_resources_on_recorded_output(bake, recorded_bin):
    project = bake(partition="h200_tandon", gpu_type="h200", gpus="6", backend="slurm")
    out = make(project, "resources", env=path_env(recorded_bin)).stdout
    assert re.search(r"^h200_tandon +h200 +8 +3 +5 +0/1/0/0 +1/6 +0/0 +0/0 +2-00:00:00$", out, re.M)
    assert ("Recommendation for 6x h200, 01:00:00: nothing is free now; fewest GPUs queued ahead on "
            "h200_tandon (idle h200: 5, GPUs queued: 6); accounts not checked (make resources REFRESH=1)") in out
    report = json.loads(make(project, "resources", "JSON=1", "GPUS=2", env=path_env(recorded_bin)).stdout)
    assert report["request"]["gpus"] == 2 and report["recommendation"]["verdict"] == "start_now"
    assert len(report["partitions"]) == 4  # the project's partition is the request, not a filter
    narrowed = json.loads(make(project, "resources", "JSON=1", "PARTITION=cs", "GPUS=0",
                               env=path_env(recorded_bin)).stdout)
    assert [row["partition"] for row in narrowed["partitions"]] == ["cs"]


def test_make_resources_refresh_writes_the_access_cache(bake, recorded_bin, tmp_path):
    logging_sbatch(recorded_bin, tmp_path / "sbatch.log", refuse="--partition=h200_tandon")
    project = bake(partition="l40s_public", gpu_type="l40s", gpus="1", backend="slurm")
    out = make(project, "resources", "REFRESH=1", env=path_env(recorded_bin)).stdout
    assert "accounts: torch_pr_68_tandon_advanced, torch_pr_68_general)" in out
    access = json.loads((project / ".expflow" / "access.json").read_text())
    assert [entry["accepted"] for entry in access["accounts"]] == [["cs", "l40s_public", "rtx8000"]] * 2
    assert access["accounts"][0]["refused"] == {"h200_tandon": "Requested node configuration is not available"}
    again = make(project, "resources", "JSON=1", env=path_env(recorded_bin)).stdout  # from the cache now
    assert json.loads(again)["access_checked"] == access["checked"]


def test_make_resources_without_sinfo_is_one_error_line(bake, tmp_path):
    fake_command(tmp_path, "sinfo", stderr="sacct-accounting-disabled.err", rc=1)
    result = make(bake(), "resources", env=path_env(tmp_path), check=False)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].startswith("error: cannot list the nodes: sinfo failed: ")


def test_make_check_tests_the_command_line_make_train_would_submit(bake, recorded_bin, tmp_path):
    log = tmp_path / "sbatch.log"
    logging_sbatch(recorded_bin, log)
    project = bake(partition="l40s_public", gpu_type="l40s", gpus="1", account="torch_pr_68_general",
                   backend="slurm")
    make(project, "new", "EXP=x", "GPUS=2", "TIME=02:00:00", env=path_env(recorded_bin))
    out = make(project, "check", "EXP=x", "MEM=8G", env=path_env(recorded_bin)).stdout
    assert out == ("[OK] the job's environment sets up (none named in settings.env)\n"
                   "[OK] SLURM accepts experiment x (l40s_public, 2x l40s, 02:00:00, account torch_pr_68_general): "
                   "it would start at 2026-11-28T17:58:03 on gh001; nothing was submitted\n")
    checked = log.read_text().splitlines()
    dry_run = make(project, "train", "EXP=x", "MEM=8G", "DRY_RUN=1", env=path_env(recorded_bin)).stdout
    # the same command line, but for the token that names each submission
    submitted = shlex.split(dry_run.splitlines()[1])[1:]
    assert [re.sub(r"^(--job-name=x-train)\.[0-9a-f]{8}$", r"\1", arg) for arg in checked] == (
        ["--test-only"] + [re.sub(r"^(--job-name=x-train)\.[0-9a-f]{8}$", r"\1", arg) for arg in submitted])
    assert "--gres=gpu:l40s:2" in checked and "--mem=8G" in checked


def test_make_check_reports_slurms_reason(bake, recorded_bin, tmp_path):
    logging_sbatch(recorded_bin, tmp_path / "sbatch.log", refuse="--gres=gpu:h200:1")
    project = bake(partition="l40s_public", gpu_type="l40s", gpus="1", backend="slurm")
    result = make(project, "check", "GPU_TYPE=h200", env=path_env(recorded_bin), check=False)
    assert result.returncode != 0
    assert result.stdout == "[OK] the job's environment sets up (none named in settings.env)\n"
    assert result.stderr.splitlines()[0] == (
        "error: SLURM would refuse the project's settings (l40s_public, 1x h200, 01:00:00, your default account): "
        "Requested node configuration is not available: partition l40s_public has no h200 GPUs (it has l40s) "
        "(GPU_TYPE='h200' from the command line, PARTITION='l40s_public' from settings.env)")


def test_make_check_on_the_local_backend_has_nothing_to_ask(bake):
    out = make(bake(), "check", env={"BACKEND": "local"}).stdout
    assert out == ("[OK] the job's environment sets up (none named in settings.env)\n"
                   "[OK] nothing to check for the project's settings: jobs run on this machine (BACKEND=local)\n")


def test_gpus_sinfo_did_not_make_clear_are_unknown_not_idle(capsys):
    """Shards in use on gs001: which GPUs they hold is unknown, so its idle GPUs
    are "?" (and a WARNING), never counted as free; gr001's are known."""
    nodes = slurmkit.parse_sinfo_nodes(
        "gs001|gpu|up|1-00:00:00|mixed|1/31/0/32|256000|1000|gpu:2,shard:64|"
        "gpu:(null):0(IDX:N/A),shard:(null):5(5/32,0/32)|\n"
        "gr001|gpu|up|1-00:00:00|mixed|1/31/0/32|256000|1000|gpu:4|gpu:(null):1(IDX:0)|\n"
    )
    assert "WARNING: GPUs shared through shard are in use" in capsys.readouterr().err
    jobs = slurmkit.parse_squeue_all("9|bob|gpu|PENDING|1|1|gres/gpu:x:y|N/A|N/A|cpu=1|Priority|\n")
    assert jobs[0].gpus is None  # a request it cannot read
    report = advice.build_report(nodes, jobs, "alice", advice.make_request({"gpus": "4"}), None)
    (row,) = report["partitions"]
    assert (row["gpus_total"], row["gpus_allocated"], row["gpus_idle"], row["pending_gpus"]) == (6, None, None, None)
    assert report["recommendation"]["verdict"] == "queue"  # gr001's 3 free GPUs are not 4; gs001's are unknown
    assert re.search(r"^gpu +- +6 +\? +\? +0/2/0/0 +1/\? ", advice.render_text(report, 200), re.M)


# ----------------------------------------------------------------- why SLURM refused a job

def refusal(busy, reason, sources=None, **resources):
    values = dict.fromkeys((key.lower() for key in slurmkit.RESOURCE_KEYS), "")
    values.update(resources)
    given = {key: "settings.env" for key in slurmkit.RESOURCE_KEYS}
    given.update(sources or {})
    return advice.explain_refusal(reason, values, given, busy[0])


def test_a_refusal_names_the_value_in_conflict_and_where_it_lives(busy):
    node_config = slurmkit.sbatch_rejection_reason(read_data("sbatch-reject-gres.err"))
    text = refusal(busy, node_config, {"PARTITION": "the command line"},
                   partition="l40s_public", gpu_type="h200", gpus="2", time="01:00:00")
    assert text == ("Requested node configuration is not available: partition l40s_public has no h200 GPUs "
                    "(it has l40s) (GPU_TYPE='h200' from settings.env, PARTITION='l40s_public' from the command line)")
    text = refusal(busy, node_config, partition="l40s_public", gpu_type="l40s", gpus="8")
    assert text.endswith(": nodes of l40s_public have at most 4 l40s GPUs each (GPUS='8' from settings.env, "
                         "PARTITION='l40s_public' from settings.env)")
    assert ": partition cs has no GPUs (" in refusal(busy, node_config, partition="cs", gpus="1")
    assert refusal(busy, "Invalid partition name specified", partition="nosuch") == (
        "Invalid partition name specified: there is no partition nosuch (PARTITION='nosuch' from settings.env)")


def test_a_refusal_without_a_visible_conflict_names_the_values_its_words_are_about(busy):
    own = "experiments/005/settings.env"
    text = refusal(busy, "Invalid account or account/partition combination specified", {"ACCOUNT": own},
                   account="nobody", partition="cs", gpus="0")
    assert text.endswith("(ACCOUNT='nobody' from experiments/005/settings.env, PARTITION='cs' from settings.env)")
    assert advice.refusal_settings("Requested time limit is invalid (missing or exceeds some limit)") == [
        "TIME", "PARTITION"]
    assert refusal(busy, "something new", partition="cs") == "something new"
