"""Every sample of tests/data/slurm/corpus.json through its parser, one test each.

The samples are real outputs of SLURM 20.11 to 25.11 from several sites and
documented-only forms (tests/data/slurm/README.md, "The corpus"); each expected
meaning was written from SLURM's documentation or source, not from these parsers.
A sample marked "warns" must make its parser say WARNING once; no other may."""

import json

import pytest
from conftest import DATA

from expflow.runtime import slurmkit

CORPUS = json.loads((DATA / "slurm" / "corpus.json").read_text())


def text_of(sample):
    """The bytes as run_command decodes them: UTF-8, anything else replaced."""
    return (DATA / "slurm" / sample["file"]).read_bytes().decode("utf-8", errors="replace")


def gpus(items):
    return [[g.type, g.total, g.used] for g in items]


def read(sample):
    """The sample's meaning as the parser gives it, in the manifest's shape."""
    text, args, parser = text_of(sample), sample["args"], sample["parser"]
    if parser == "sinfo_nodes":
        fields = tuple(args.get("fields", slurmkit.SINFO_NODE_FIELDS))
        return {n.name: [n.state, gpus(n.gpus)] for n in slurmkit.parse_sinfo_nodes(text, fields)}
    if parser == "sinfo_partitions":
        return {p.name: [p.cpus_per_node, p.memory_mb, list(p.gpu_types), p.gpus_per_node]
                for p in slurmkit.parse_sinfo_partitions(text)}
    if parser == "squeue_all":
        fields = tuple(args.get("fields", slurmkit.SQUEUE_ALL_FIELDS))
        return {j.job_id: [j.gpu_type, j.gpus] for j in slurmkit.parse_squeue_all(text, fields)}
    if parser in ("squeue", "sacct"):
        jobs = (slurmkit.parse_squeue if parser == "squeue" else slurmkit.parse_sacct)(text)
        for absent in args.get("absent", []):
            assert absent not in jobs, "a task after SLURM's cut must stay unknown"
        if parser == "squeue":
            return {k: [j.state, j.gpu_type, j.gpus] for k, j in jobs.items()}
        return {k: [j.state, j.exit_code or 0, j.gpu_type, j.gpus] for k, j in jobs.items()}
    if parser == "sacctmgr_assoc":
        accounts = slurmkit.parse_sacctmgr_accounts(text, args.get("cluster", ""))
        return len(accounts) if "count" in args else accounts
    if parser == "sacctmgr_user":
        return slurmkit.parse_sacctmgr_default_account(text)
    if parser == "scontrol_assoc_mgr":
        accounts, default_account = slurmkit.parse_scontrol_assoc_mgr(text)
        return {"accounts": accounts, "default_account": default_account}
    if parser == "scontrol_job":
        return list(slurmkit.gpus_from_tres(slurmkit.allocated_tres(slurmkit.parse_scontrol_job(text))))
    if parser == "tres":
        return list(slurmkit.gpus_from_tres(text.strip()))
    if parser == "scontrol_config":
        config = slurmkit.parse_scontrol_config(text)
        return dict({k: config.get(k) for k in sample["expected"] if k != "accounting"},
                    accounting=slurmkit.accounting_enabled(config))
    if parser == "test_only":
        return slurmkit.parse_sbatch_test_only(text)
    if parser == "sbatch_refusal":
        return slurmkit.sbatch_test_only_reason(text)
    if parser == "sbatch_parsable":
        return slurmkit.parse_sbatch_parsable(text)
    if parser == "node_state":
        return slurmkit.node_state(text)
    if parser == "array_id":
        tasks = slurmkit.expand_array_id(text.strip())
        return len(tasks)
    raise AssertionError("no parser named " + parser)


def narrow(found, expected):
    """Compare only what the manifest states: the jobs or nodes it names."""
    if isinstance(expected, dict) and isinstance(found, dict):
        return {key: found.get(key, "<missing>") for key in expected}
    return found


@pytest.mark.parametrize("sample", CORPUS, ids=[s["id"] for s in CORPUS])
def test_sample(sample, capsys):
    slurmkit._WARNED.clear()
    found = read(sample)
    expected = sample["expected"] if "count" not in sample["args"] else sample["args"]["count"]
    where = "{} (SLURM {}, {}; {})".format(sample["file"], sample["version"], sample["site"], sample["source"])
    assert narrow(found, expected) == expected, where
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("WARNING: ")]
    assert bool(warnings) == sample["warns"], f"{where}: warnings {warnings}"
    assert len(warnings) == len(set(warnings)), "each warning once"


def test_the_corpus_is_wide_enough():
    versions = {s["version"][:5] for s in CORPUS if s["version"][:2].isdigit() and s["version"][2] == "."}
    assert len(CORPUS) >= 100 and len(versions) >= 8, sorted(versions)
    assert len({s["site"] for s in CORPUS}) >= 4


def test_every_sample_is_in_the_readme():
    readme = (DATA / "slurm" / "README.md").read_text()
    missing = [s["id"] for s in CORPUS if "`{}`".format(s["id"]) not in readme]
    assert not missing
