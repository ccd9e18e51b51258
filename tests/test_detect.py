"""detect() with fake scheduler commands on PATH, for fault injection only:
the real path is tested on the test cluster (test_slurm_cluster.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from conftest import DATA, read_data

from expflow.context import detected_values
from expflow.detect import accounts_argv, detect, find_scratch, start_detect
from expflow.runtime import slurmkit


def _answer(stdout: str = "", stderr: str = "", rc: int = 0, sleep: float = 0) -> list[str]:
    lines = [f"sleep {sleep}"] if sleep else []
    if stdout:
        lines.append(f"cat '{DATA / 'slurm' / stdout}'")
    if stderr:
        lines.append(f"cat '{DATA / 'slurm' / stderr}' >&2")
    return [*lines, f"exit {rc}"]


def fake_command(bin_dir: Path, name: str, cases: dict[str, dict] | None = None, **answer):
    """An executable `name` that prints recorded output, fails or hangs; cases:
    another answer when one of its arguments is this word (`scontrol show
    assoc_mgr` beside `scontrol show config`)."""
    lines = ["#!/bin/bash"]
    for word, case in (cases or {}).items():
        lines += [f'if [[ " $* " == *" {word} "* ]]; then', *_answer(**case), "fi"]
    script = bin_dir / name
    script.write_text("\n".join([*lines, *_answer(**answer)]) + "\n")
    script.chmod(0o755)


def torch_commands(bin_dir, **overrides):
    commands = {
        "sbatch": {},
        "scontrol": {"stdout": "scontrol-show-config.txt",
                     "cases": {"assoc_mgr": {"stdout": "scontrol-assoc-mgr-alice.txt"}}},
        "sinfo": {"stdout": "sinfo-partitions.txt"},
        "sacctmgr": {"stdout": "sacctmgr-user-alice.txt", "cases": {"assoc": {"stdout": "sacctmgr-assoc-alice.txt"}}},
    }
    commands.update(overrides)
    for name, spec in commands.items():
        fake_command(bin_dir, name, **spec)


def test_detects_recorded_torch(fake_bin):
    torch_commands(fake_bin)
    facts = detect()
    assert facts.cluster == "torch" and facts.sources["cluster"] == "scontrol show config"
    assert [p.name for p in facts.partitions] == ["cs", "rtx8000", "l40s_public", "h200_tandon"]
    assert facts.default_partition == "cs"
    assert facts.accounts == ("torch_pr_68_tandon_advanced", "torch_pr_68_general")
    assert facts.default_account == "torch_pr_68_general" and facts.sources["accounts"] == "scontrol show assoc_mgr"
    assert facts.accounting and facts.max_array_size == 1001
    assert facts.warnings == ("no scratch directory found ($SCRATCH, /scratch/<user>, ...): "
                              "large files stay in the project",)


def test_hanging_command_gives_default_and_warning(fake_bin):
    torch_commands(fake_bin, sinfo={"stdout": "sinfo-partitions.txt", "sleep": 30})
    start = time.monotonic()
    facts = detect(timeout=1)
    assert time.monotonic() - start < 5, "the four probes must run concurrently, each with a timeout"
    assert facts.partitions == ()
    assert any("sinfo timed out after 1s" in w for w in facts.warnings)
    assert facts.cluster == "torch"  # the other probes still count


def test_start_detect_returns_while_slurm_answers(fake_bin):
    """scaffold loads cookiecutter meanwhile: start_detect asks all three at once
    and returns; what it returns waits for the answers."""
    torch_commands(fake_bin)
    asked, answer = [], threading.Event()

    def run(argv, timeout):
        asked.append(argv[0] if argv[0] != "scontrol" else " ".join(argv[:3]))
        assert answer.wait(10), "start_detect waited for a query"
        return slurmkit.run_command(argv, timeout=timeout)

    facts_when_answered = start_detect(run=run)
    deadline = time.monotonic() + 10
    while len(asked) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(asked) == ["scontrol --oneliner show", "scontrol show config", "sinfo"]
    answer.set()
    facts = facts_when_answered()
    assert facts.cluster == "torch" and facts.accounts == ("torch_pr_68_tandon_advanced", "torch_pr_68_general")
    assert "sacctmgr" not in asked, "slurmctld knew the accounts: slurmdbd is not asked"


ALICE_ACCOUNTS = (("torch_pr_68_tandon_advanced", "torch_pr_68_general"), "torch_pr_68_general")


@pytest.mark.parametrize("assoc_mgr", [
    {"rc": 1, "stderr": "sbatch-reject-account.err"},  # scontrol fails
    {"stdout": "scontrol-assoc-mgr-alice.txt", "sleep": 30},  # slurmctld does not answer in time
    {"stdout": "scontrol-assoc-mgr-nobody.txt"},  # a user slurmctld has no association of
    {"stdout": "scontrol-show-config-noacct.txt"},  # something else: no association read
], ids=["fails", "hangs", "no-association", "unreadable"])
def test_accounts_from_sacctmgr_when_scontrol_has_none(fake_bin, assoc_mgr):
    torch_commands(fake_bin, scontrol={"stdout": "scontrol-show-config.txt", "cases": {"assoc_mgr": assoc_mgr}})
    facts = detect(timeout=1)
    assert (facts.accounts, facts.default_account) == ALICE_ACCOUNTS and facts.sources["accounts"] == "sacctmgr"
    assert not any("account" in w for w in facts.warnings), facts.warnings


def test_scontrol_and_sacctmgr_give_the_same_accounts(fake_bin):
    """Recorded from one cluster: the same accounts in the same order (Lft),
    the same default, whichever answers."""
    torch_commands(fake_bin, sacctmgr={"rc": 1, "stderr": "sbatch-reject-account.err"})  # not asked
    facts = detect()
    assert (facts.accounts, facts.default_account) == ALICE_ACCOUNTS
    assert not any("account" in w for w in facts.warnings), facts.warnings
    assert ALICE_ACCOUNTS[0] == tuple(slurmkit.parse_sacctmgr_accounts(read_data("sacctmgr-assoc-alice.txt"), "torch"))
    assert ALICE_ACCOUNTS[1] == slurmkit.parse_sacctmgr_default_account(read_data("sacctmgr-user-alice.txt"))


def test_accounting_off_in_the_config_wins_over_scontrols_associations(fake_bin):
    torch_commands(fake_bin, scontrol={"stdout": "scontrol-show-config-noacct.txt",
                                       "cases": {"assoc_mgr": {"stdout": "scontrol-assoc-mgr-alice.txt"}}})
    facts = detect()
    assert not facts.accounting and facts.accounts == () and facts.sources["accounts"] == "none (accounting disabled)"


def test_a_query_times_out_from_its_start_not_from_the_wait(fake_bin):
    torch_commands(fake_bin, sinfo={"stdout": "sinfo-partitions.txt", "sleep": 30})
    facts_when_answered = start_detect(timeout=1)
    time.sleep(1.5)  # scaffold loading cookiecutter
    start = time.monotonic()
    facts = facts_when_answered()
    assert time.monotonic() - start < 1, "the timeout ran while the caller did other things"
    assert any("sinfo timed out after 1s" in w for w in facts.warnings) and facts.cluster == "torch"


def test_the_accounts_query_is_slurmkits_without_its_unread_columns():
    """The same `sacctmgr show assoc` (so the same order of accounts), without
    QOS, which costs sacctmgr one more request to slurmdbd."""
    ours, runtime_s = accounts_argv("alice"), slurmkit.sacctmgr_assoc_argv("alice")
    assert ours[:-1] == runtime_s[:-1] and ours[-1] == "format=Cluster,Account"
    assert slurmkit.parse_sacctmgr_accounts("torch|torch_pr_68_tandon_advanced\ntorch|torch_pr_68_general\n",
                                            "torch") == ["torch_pr_68_tandon_advanced", "torch_pr_68_general"]


def test_failing_commands_never_crash(fake_bin):
    torch_commands(fake_bin, scontrol={"rc": 1, "stderr": "sacct-accounting-disabled.err"},
                   sacctmgr={"rc": 1, "stderr": "sbatch-reject-account.err"})  # scontrol's failure: sacctmgr asked
    facts = detect()
    assert facts.cluster == os.uname().nodename and facts.sources["cluster"] == "hostname"
    assert facts.accounts == () and facts.default_account == ""
    assert any(w.startswith("could not list your accounts") for w in facts.warnings)


def test_accounting_disabled(fake_bin):
    torch_commands(fake_bin, scontrol={"stdout": "scontrol-show-config-noacct.txt"},
                   sacctmgr={"rc": 1, "stderr": "sacctmgr-accounting-disabled.err"})
    facts = detect()
    assert not facts.accounting and facts.accounts == ()
    assert not any("account" in w for w in facts.warnings)


def test_no_slurm_at_all(fake_bin, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_bin))  # nothing on it: a laptop
    monkeypatch.setenv("SLURM_CLUSTER_NAME", "laptop-cluster")
    facts = detect()
    assert not facts.slurm and facts.partitions == ()
    assert facts.cluster == "laptop-cluster"
    assert any("no SLURM commands on PATH" in w for w in facts.warnings)


def test_scratch_order(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    second.mkdir()
    assert find_scratch("nobody-expflow", {"SCRATCH": str(first)}) == ("", "none found")
    first.mkdir()
    assert find_scratch("nobody-expflow", {"SCRATCH": str(first)}) == (str(first), "$SCRATCH")


def test_a_site_mail_domain_becomes_the_default_mail_user(fake_bin):
    torch_commands(fake_bin, scontrol={"stdout": "scontrol-show-config-maildomain.txt"})
    facts = detect()
    assert facts.mail_domain == "example.edu" and facts.sources["mail_domain"] == "scontrol show config"
    assert detected_values(facts)["mail_user"] == f"{facts.user}@example.edu"
    torch_commands(fake_bin)  # MailDomain (null): no address is guessed
    assert detect().mail_domain == "" and detected_values(detect())["mail_user"] == ""
