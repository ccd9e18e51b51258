"""The expflow command and the values it renders, through main(argv)."""

import json

import pytest
from conftest import read_data

from expflow.cli import main
from expflow.cluster import ClusterFacts, PartitionFacts
from expflow.context import build_context
from expflow.errors import UsageError
from expflow.runtime import slurmkit


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
    assert exit_info.value.code == 0 and capsys.readouterr().out == "expflow 0.1.0\n"


def test_context_follows_the_chosen_partition(torch_facts):
    context = build_context("p", torch_facts, {})
    assert (context["partition"], context["gpu_type"], context["gpus"]) == ("cs", "", "0")
    assert context["account"] == "torch_pr_68_general" and context["scratch_root"] == "/scratch/alice"
    context = build_context("p", torch_facts, {"partition": "h200_tandon"})
    assert (context["gpu_type"], context["gpus"], context["time"]) == ("h200", "1", "01:00:00")


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
    monkeypatch.setattr("expflow.cli.detect", lambda: torch_facts)
    questions = []
    answers = iter(["l40s_public", "", "2", "torch_pr_68_tandon_advanced", "", "modules", "cuda/12.1 python/3.11"])

    def ask(question):
        questions.append(question)
        return next(answers)

    assert main(["scaffold", "p", "-o", str(tmp_path)], ask=ask) == 0
    assert questions[0] == "Partition (cs, rtx8000, l40s_public, h200_tandon) [cs]: "
    assert questions[1] == "GPU type (l40s) [l40s]: "
    assert questions[5] == "How do jobs get their Python (none, modules, conda, venv, apptainer) [none]: "
    settings = (tmp_path / "p" / "settings.env").read_text()
    for line in ("PARTITION='l40s_public'", "GPU_TYPE='l40s'", "GPUS='2'", "ACCOUNT='torch_pr_68_tandon_advanced'",
                 "ENV_MODULES='cuda/12.1 python/3.11'", "CLUSTER='torch'"):
        assert line in settings.splitlines()
    assert "[OK] created" in capsys.readouterr().out


def test_info_json_shape(monkeypatch, torch_facts, capsys):
    monkeypatch.setattr("expflow.cli.detect", lambda: torch_facts)
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["default_partition"] == "cs" and info["partitions"][3]["gpu_types"] == ["h200"]
    assert set(info) == {"user", "home", "scratch", "cluster", "slurm", "accounting", "accounts", "default_account",
                         "default_partition", "partitions", "max_array_size", "conda_base", "sources", "warnings"}
