"""The expflow command and the values it renders, through main(argv)."""

import functools
import json
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, read_data
from test_detect import fake_command, torch_commands
from test_resources import logging_sbatch

from expflow import __version__
from expflow.cli import main
from expflow.cluster import ClusterFacts, PartitionFacts
from expflow.context import build_context
from expflow.detect import start_detect
from expflow.errors import UsageError
from expflow.runtime import module, slurmkit

advice = module("advice")


@pytest.fixture
def torch_facts() -> ClusterFacts:
    """What detection finds on the test cluster, from its recorded outputs."""
    partitions = slurmkit.parse_sinfo_partitions(read_data("sinfo-partitions.txt"))
    return ClusterFacts(
        user="alice", home="/home/alice", scratch="/scratch/alice", cluster="torch", slurm=True,
        accounting=True, accounts=tuple(slurmkit.parse_sacctmgr_accounts(read_data("sacctmgr-assoc-alice.txt"))),
        default_account="torch_pr_68_general", partitions=tuple(PartitionFacts(**p._asdict()) for p in partitions),
    )


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"expflow {__version__}\n"


def test_context_follows_the_chosen_partition(torch_facts):
    context = build_context("p", torch_facts, {})
    assert (context["partition"], context["gpu_type"], context["gpus"]) == ("cs", "", "0")
    assert context["account"] == "torch_pr_68_general" and context["scratch_root"] == "/scratch/alice"
    context = build_context("p", torch_facts, {"partition": "h200_tandon"})
    assert (context["gpu_type"], context["gpus"], context["time"]) == ("h200", "1", "01:00:00")
    assert context["cpus_per_gpu"] == "1"  # 8 CPUs for 8 GPUs on gh001: a GPU's fair share
    assert build_context("p", torch_facts, {"partition": "rtx8000"})["cpus_per_gpu"] == "2"  # 8 for 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"partition": "gpu"}, "partition 'gpu' is not on cluster torch (cs, rtx8000, l40s_public, h200_tandon)"),
        ({"partition": "l40s_public", "gpu_type": "h200"}, "partition l40s_public has no 'h200' GPUs (it has: l40s)"),
        ({"account": "someone_else"}, "account 'someone_else' is not yours on torch"),
        ({"time": "forever"}, "TIME='forever' is not a SLURM time"),
        ({"backend": "kubernetes"}, "backend='kubernetes' is not one of auto, slurm, local"),
    ],
)
def test_context_rejects_what_the_cluster_would(torch_facts, overrides, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_context("p", torch_facts, overrides)


def test_scaffold_unknown_set_key_is_one_line_and_writes_nothing(tmp_path, capsys):
    code = main(["scaffold", "p", "-o", str(tmp_path), "--no-input", "--no-detect", "--set", "gpu=2"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("expflow: error: unknown setting 'gpu'; known: project_name,")
    assert len(err.splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_scaffold_refuses_an_existing_directory(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "mine.txt").write_text("keep me")
    code = main(["scaffold", "p", "-o", str(tmp_path), "--no-input", "--no-detect"])
    assert code == 1 and "already exists" in capsys.readouterr().err
    assert [f.name for f in (tmp_path / "p").iterdir()] == ["mine.txt"]


def test_scaffold_asks_with_detected_defaults(tmp_path, monkeypatch, torch_facts, capsys):
    monkeypatch.setattr("expflow.cli.start_detect", lambda: lambda: torch_facts)
    questions = []
    answers = iter(["l40s_public", "", "2", "torch_pr_68_tandon_advanced", "", "modules", "cuda/12.1 python/3.11",
                    "n"])

    def ask(question):
        questions.append(question)
        return next(answers)

    assert main(["scaffold", "p", "-o", str(tmp_path)], ask=ask) == 0
    assert questions[0] == "Partition (cs, rtx8000, l40s_public, h200_tandon) [cs]: "
    assert questions[1] == "GPU type (l40s) [l40s]: "
    assert questions[5] == "How do jobs get their Python (none, modules, conda, venv, apptainer) [none]: "
    settings = (tmp_path / "p" / "settings.env").read_text()
    for line in ("PARTITION='l40s_public'", "GPU_TYPE='l40s'", "GPUS='2'", "ACCOUNT='torch_pr_68_tandon_advanced'",
                 "ENV_MODULES='cuda/12.1 python/3.11'", "CLUSTER='torch'", "CPUS_PER_GPU='2'", "LAUNCHER='none'"):
        assert line in settings.splitlines()
    assert "[OK] created" in capsys.readouterr().out


def test_scaffold_asks_slurm_before_it_loads_cookiecutter(tmp_path, fake_bin):
    """SLURM answers while Python loads cookiecutter: the queries start first (in
    a fresh interpreter, where nothing has loaded cookiecutter yet)."""
    torch_commands(fake_bin)
    script = textwrap.dedent("""
        import sys
        from expflow import cli

        order = []
        start_detect = cli.start_detect
        cli.start_detect = lambda: order.append("SLURM queries") or start_detect()

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "cookiecutter" and "cookiecutter" not in order:
                    order.append("cookiecutter")

        sys.meta_path.insert(0, Watch())
        code = cli.main(["scaffold", "p", "-o", sys.argv[1], "--no-input"])
        print("order:", code, order)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines()[-1] == "order: 0 ['SLURM queries', 'cookiecutter']"
    assert "CLUSTER='torch'" in (tmp_path / "p" / "settings.env").read_text().splitlines()


def test_scaffold_with_a_hanging_query_warns_and_writes_the_project(tmp_path, monkeypatch, fake_bin, capsys):
    torch_commands(fake_bin, sinfo={"stdout": "sinfo-partitions.txt", "sleep": 30})
    monkeypatch.setattr("expflow.cli.start_detect", functools.partial(start_detect, timeout=1))
    assert main(["scaffold", "p", "-o", str(tmp_path), "--no-input"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: could not list partitions (sinfo timed out after 1s): SLURM's defaults apply\n" in err
    settings = (tmp_path / "p" / "settings.env").read_text().splitlines()
    assert "CLUSTER='torch'" in settings and "PARTITION=''" in settings


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """sbatch on PATH that logs its arguments and refuses --partition=h200_tandon
    (recorded answers); returns the log. The current directory is no project."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    logging_sbatch(bin_dir, log, refuse="--partition=h200_tandon")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.chdir(tmp_path)
    return log


def test_info_json_shape(monkeypatch, torch_facts, fake_sbatch, capsys):
    monkeypatch.setattr("expflow.cli.detect", lambda: torch_facts)
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["default_partition"] == "cs" and info["partitions"][3]["gpu_types"] == ["h200"]
    assert set(info) == {"user", "home", "scratch", "cluster", "slurm", "accounting", "accounts", "default_account",
                         "default_partition", "partitions", "max_array_size", "conda_base", "mail_domain", "sources",
                         "warnings", "access"}
    access = info["access"]
    assert (access["user"], access["cluster"], access["source"]) == ("alice", "torch", "sbatch --test-only")
    assert [entry["account"] for entry in access["accounts"]] == ["torch_pr_68_tandon_advanced", "torch_pr_68_general"]
    assert access["accounts"][1] == {"account": "torch_pr_68_general", "accepted": ["cs", "rtx8000", "l40s_public"],
                                     "refused": {"h200_tandon": "Requested node configuration is not available"},
                                     "unchecked": {}}


def test_info_lists_per_account_the_partitions_that_accept_it(monkeypatch, torch_facts, fake_sbatch, capsys):
    monkeypatch.setattr("expflow.cli.detect", lambda: torch_facts)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "access:           [sbatch --test-only, checked " in out
    assert "  torch_pr_68_general            cs, rtx8000, l40s_public\n" in out
    assert "refused by h200_tandon: Requested node configuration is not available" in out
    assert len(fake_sbatch.read_text().splitlines()) > 0


def test_info_in_a_project_reads_its_cache_until_refresh(monkeypatch, torch_facts, fake_sbatch, bake, capsys):
    monkeypatch.setattr("expflow.cli.detect", lambda: torch_facts)
    project = bake()
    cached = {"user": "alice", "checked": "2026-11-28T10:00:00+00:00",
              "accounts": [{"account": "torch_pr_68_general", "accepted": ["cs"], "refused": {}}]}
    advice.write_access(str(project), cached)
    monkeypatch.chdir(project)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"access:           [{project}/.expflow/access.json, checked 2026-11-28T10:00:00+00:00;" in out
    assert not fake_sbatch.exists()  # nothing asked
    assert main(["info", "--refresh"]) == 0
    assert "[sbatch --test-only, checked" in capsys.readouterr().out
    refreshed = json.loads((project / ".expflow" / "access.json").read_text())
    assert len(refreshed["accounts"]) == 2 and refreshed["checked"] != cached["checked"]


def test_resources_command(tmp_path, monkeypatch, fake_sbatch, capsys):
    bin_dir = tmp_path / "bin"
    fake_command(bin_dir, "sinfo", stdout="sinfo-nodes-resources-busy.txt")
    fake_command(bin_dir, "squeue", stdout="squeue-all-format-busy.txt")
    assert main(["resources", "--gpu-type", "h200", "--gpus", "6", "--time", "04:00:00", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["request"] == {"partition": "", "gpu_type": "h200", "gpus": 6, "nodes": 1, "cpus": 1, "mem": "",
                                 "time": "04:00:00"}
    assert [(r["partition"], r["gpus_allocated"], r["gpus_idle"]) for r in report["partitions"]] == [
        ("h200_tandon", 3, 5)]
    assert report["recommendation"]["verdict"] == "queue"
    assert main(["resources", "--partition", "l40s_public"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:5] == ["l40s_public", "l40s", "4", "2", "2"]
    assert "can start now on l40s_public (idle l40s: 2, GPUs queued: 4); accounts not checked: " in out


def test_resources_refuses_bad_values_in_one_line(capsys):
    assert main(["resources", "--gpus", "two"]) == 1
    err = capsys.readouterr().err
    assert err == "expflow: error: GPUS='two' is not a whole number of GPUs per node, such as 1\n"


def test_scaffold_check_access_refused_writes_nothing(tmp_path, monkeypatch, torch_facts, fake_sbatch, capsys):
    monkeypatch.setattr("expflow.cli.start_detect", lambda: lambda: torch_facts)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = main(["scaffold", "p", "-o", str(out_dir), "--no-input", "--check-access", "--set", "partition=h200_tandon"])
    err = capsys.readouterr().err
    assert code == 1 and err == (
        "expflow: error: SLURM refuses account torch_pr_68_general on partition h200_tandon with gpu:h200:1 "
        "for 01:00:00: Requested node configuration is not available; nothing written\n")
    assert list(out_dir.iterdir()) == []
    assert "--test-only" in fake_sbatch.read_text().splitlines()


def test_scaffold_check_access_accepted_and_the_access_cache(tmp_path, monkeypatch, torch_facts, fake_sbatch, capsys):
    monkeypatch.setattr("expflow.cli.start_detect", lambda: lambda: torch_facts)
    code = main(["scaffold", "p", "-o", str(tmp_path), "--no-input", "--check-access",
                 "--set", "partition=l40s_public"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith(
        "[OK] SLURM accepts account torch_pr_68_general on partition l40s_public with gpu:l40s:1 for 01:00:00 "
        "(it would start at 2026-11-28T17:58:03 on gh001)\n[OK] created ")
    access = json.loads((tmp_path / "p" / ".expflow" / "access.json").read_text())
    assert access["user"] == "alice" and access["accounts"][0]["refused"] == {
        "h200_tandon": "Requested node configuration is not available"}


def test_scaffold_check_access_needs_detection(tmp_path, capsys):
    assert main(["scaffold", "p", "-o", str(tmp_path), "--no-input", "--no-detect", "--check-access"]) == 1
    assert capsys.readouterr().err == (
        "expflow: error: --check-access asks SLURM, so it does not go with --no-detect\n")
    assert list(tmp_path.iterdir()) == []


def test_output_whose_reader_has_gone_is_no_traceback():
    """`expflow completion bash | head -1` and the like: the reader closes the
    pipe before expflow writes; expflow exits 1 without a traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "expflow", "completion", "bash"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1 and err == ""
