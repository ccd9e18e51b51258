"""Reliability of the project's files (issue 11, items 4-6): scheduler output
and records that cannot be decoded or parsed are warnings, never tracebacks;
NaN is no result; records honour the umask; a full disk is one line and leaves
no temp file; symbolic links under experiments/ are refused; settings.env has
one grammar, enforced by every target and by the job itself; values with a
newline are refused where they are given. Runs on the local backend (no SLURM:
scheduler commands are fakes on PATH, for fault injection only)."""

import csv
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import DATA, make, run
from test_local_backend import LOCAL, error_line

from expflow.cli import main
from expflow.runtime import module

files = module("files")
SCHEDULER_COMMANDS = ("sbatch", "sacct", "squeue", "scancel", "sinfo", "scontrol", "sacctmgr")
NOT_UTF8 = b"\xff\xfe caf\xe9 \x80\x81 node\xc3\x28|RUNNING|0:0\n"


# ----------------------------------------------------------------- helpers

def fake_bytes_command(bin_dir: Path, name: str, outputs: dict[str, bytes]) -> None:
    """An executable `name` that prints bytes (not all UTF-8) on stdout and stderr:
    outputs[option] when an argument starts with that option, else outputs[""]."""
    lines = ["#!/bin/bash", 'for arg in "$@"; do', '  case "$arg" in']
    for option, data in outputs.items():
        path = bin_dir / f"{name}{option or '-default'}.out"
        path.write_bytes(data)
        if option:
            lines.append(f"    {option}*) cat '{path}'; printf 'caf\\351 \\377\\n' >&2; exit 0 ;;")
    lines += ["  esac", "done", f"cat '{bin_dir / name}-default.out'", "printf 'caf\\351 \\377\\n' >&2"]
    (bin_dir / name).write_text("\n".join(lines) + "\n")
    (bin_dir / name).chmod(0o755)


def recorded(name: str, plain: bytes, odd: bytes) -> bytes:
    """Recorded scheduler output with bytes that are not UTF-8 in one of its names."""
    data = (DATA / "slurm" / name).read_bytes()
    assert plain in data
    return data.replace(plain, odd, 1)


def scheduler_printing_bytes(tmp_path: Path) -> dict[str, str]:
    """The SLURM client commands on PATH print their recorded answers, with names
    (a node, a user, an account, a reason) that are not UTF-8."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    nodes = recorded("sinfo-nodes-resources-busy.txt", b"cs001", b"cs\xff001")
    partitions = recorded("sinfo-partitions.txt", b"rtx8000|", b"rtx\xe98000|")
    fake_bytes_command(bin_dir, "sinfo", {"--Node": nodes, "": partitions})
    fake_bytes_command(bin_dir, "squeue", {"": recorded("squeue-all-busy.txt", b"root", b"r\xf6ot")})
    fake_bytes_command(bin_dir, "sacctmgr", {"": recorded("sacctmgr-assoc-alice.txt", b"torch_pr_68_general",
                                                          b"torch_pr_68_g\xe9n\xe9ral")})
    config = (DATA / "slurm" / "scontrol-show-config.txt").read_bytes() + b"X\xff = 1\n"
    fake_bytes_command(bin_dir, "scontrol", {"": config})
    fake_bytes_command(bin_dir, "sacct", {"": b"4242|slurmy-train|RUNNING|0:0|00:00:10|gr\xff01|rtx8000|acc\xe9|"
                                              b"billing=1,cpu=1,mem=1G,node=1|2026-11-28T18:03:00|2026-11-28T18:03:00|"
                                              b"Unknown|None\xfe\n"})
    for name in ("sbatch", "scancel"):
        fake_bytes_command(bin_dir, name, {"": NOT_UTF8})
    return {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"}


def fake_run(project: Path, exp: str, state: str = "COMPLETED", results: bytes | None = None,
             backend: str = "local", job_id: str = "local-0001") -> Path:
    """An experiment whose training ran (as metadata and the job's own record say)."""
    make(project, "new", f"EXP={exp}", env=LOCAL)
    exp_dir = project / "experiments" / exp
    metadata = json.loads((exp_dir / "metadata.json").read_text())
    metadata["jobs"].append({"stage": "train", "job_id": job_id, "backend": backend, "pid": 0,
                             "submitted": "2024-01-01T00:00:00+00:00", "resources": {},
                             "log": f"logs/train-{job_id}.out"})
    (exp_dir / "metadata.json").write_text(json.dumps(metadata))
    if state:
        record = {"stage": "train", "job_id": job_id, "state": state, "exit_code": 0 if state == "COMPLETED" else 1,
                  "started": "2024-01-01T00:00:01+00:00", "ended": "2024-01-01T00:00:09+00:00"}
        (exp_dir / "runs" / f"train-{job_id}.json").write_text(json.dumps(record))
    if results is not None:
        (exp_dir / "train_results.json").write_bytes(results)
    return exp_dir


def read_csv(project: Path) -> dict[str, dict[str, str]]:
    with open(project / "results" / "results.csv", newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr and "Error:" not in result.stderr, result.stderr


def temp_files(root: Path) -> list[str]:
    return [os.path.join(d, n) for d, dirs, names in os.walk(root) for n in names + dirs
            if n.startswith((".tmp-", ".new-"))]


# ----------------------------------------------------------------- 4. robust reading

def test_scheduler_output_that_is_not_utf8_never_crashes(bake, tmp_path):
    project = bake()
    fake_run(project, "slurmy", state="", backend="slurm", job_id="4242")
    env = scheduler_printing_bytes(tmp_path)
    for target in ("status", "results", "resources"):
        result = make(project, target, env=env, check=False)
        no_traceback(result)
        assert result.returncode == 0, (target, result.stderr)
    assert "slurmy" in make(project, "status", env=env).stdout


def test_expflow_info_with_scheduler_output_that_is_not_utf8(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", scheduler_printing_bytes(tmp_path)["PATH"])
    monkeypatch.chdir(tmp_path)
    assert main(["info"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_unreadable_results_files_are_warnings_on_their_rows(bake):
    project = bake()
    fake_run(project, "good", results=b'{"val_acc": 0.5}')
    fake_run(project, "deep", results=b"[" * 100_000 + b"]" * 100_000)
    fake_run(project, "deep500", results=b'{"a": ' * 500 + b"1" + b"}" * 500)
    fake_run(project, "bytes", results=b'{"val_acc": "\xff\xfe"}')
    fake_run(project, "broken", results=b'{"val_acc": ')
    record = project / "experiments" / "good" / "runs" / "train-extra.json"
    record.write_bytes(b"\xff\xfe{")
    result = make(project, "results")
    no_traceback(result)
    rows = read_csv(project)
    assert set(rows) == {"good", "deep", "deep500", "bytes", "broken"}
    assert rows["good"]["val_acc"] == "0.5" and "runs/train-extra.json: not UTF-8 text" in rows["good"]["warnings"]
    assert "train_results.json: nested too deep" in rows["deep"]["warnings"]
    assert "train_results.json: nested more than 100 levels deep" in rows["deep500"]["warnings"]
    assert "train_results.json: not UTF-8 text" in rows["bytes"]["warnings"]
    assert rows["broken"]["warnings"].startswith("train_results.json: Expecting value")
    assert "WARNING: experiment deep: train_results.json: nested too deep" in result.stderr
    for target in ("status", "best", "report"):
        no_traceback(make(project, target))
    out = make(project, "compare", "A=good", "B=deep", check=False)
    no_traceback(out)
    assert out.returncode == 0


def test_nan_and_infinity_are_no_result(bake):
    project = bake()
    fake_run(project, "good", results=b'{"val_acc": 0.5, "loss": 1.0}')
    fake_run(project, "e-nan", results=b'{"val_acc": NaN, "loss": 2.0}')
    fake_run(project, "e-inf", results=b'{"val_acc": Infinity, "loss": -Infinity}')
    fake_run(project, "failed", state="FAILED", results=b'{"val_acc": 0.9, "loss": 0.5}')
    make(project, "results")

    def no_constants(name):
        raise AssertionError(f"results.json holds {name}")

    natives = {row["id"]: row for row in json.loads((project / "results" / "results.json").read_text(),
                                                     parse_constant=no_constants)}
    assert natives["e-nan"]["val_acc"] is None and natives["e-inf"]["loss"] is None
    assert natives["good"]["val_acc"] == 0.5
    rows = read_csv(project)
    assert rows["e-nan"]["val_acc"] == "" and rows["e-inf"]["val_acc"] == "" and rows["e-inf"]["loss"] == ""
    markdown = (project / "results" / "results.md").read_text()
    assert not re.search(r"\|\s*-?(nan|inf)\s*(?=\|)", markdown, re.I), markdown

    def ranked(*args):
        lines = make(project, "best", *args).stdout.splitlines()
        return [line.split()[1] for line in lines[2:] if line.strip() and line.split()[0].isdigit()]

    assert ranked() == ["good"]  # only COMPLETED, never NaN or infinity
    assert ranked("STATE=all") == ["failed", "good"]
    assert ranked("STATE=failed") == ["failed"]
    assert ranked("METRIC=loss", "MODE=min", "STATE=COMPLETED,FAILED") == ["failed", "good", "e-nan"]
    assert "no experiment has metric 'val_acc' yet among RUNNING" in make(project, "best", "STATE=RUNNING").stdout


def test_metrics_jsonl_that_is_not_utf8_in_the_report(bake):
    project = bake()
    exp_dir = fake_run(project, "curvy")
    (exp_dir / "train_metrics.jsonl").write_bytes(
        b'{"step": 1, "loss": 0.5}\n\xff\xfe\x80\n{"step": 2, "loss": NaN}\n' + b"[" * 100_000 + b"\n"
        b'{"step": 3, "loss": 0.25, "note": "caf\xe9"}\n')
    result = make(project, "report")
    no_traceback(result)
    page = (project / "results" / "report.html").read_text()
    blob = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0], parse_constant=float)
    assert blob["curves"]["curvy"]["train"]["metrics"] == {"loss": [0.5, 0.25]}  # NaN and damaged lines skipped
    assert blob["curves"]["curvy"]["train"]["step"] == [1, 3]
    status = make(project, "status")
    no_traceback(status)


def test_package_list_that_is_not_utf8_in_compare(bake):
    project = bake()
    for exp, version in (("a", b"1.0"), ("b", b"2.\xff")):
        exp_dir = fake_run(project, exp)
        (exp_dir / "runs" / "train-local-0001.packages.txt").write_bytes(b"numpy==" + version + b"\n\xfe\xff\n")
        record_path = exp_dir / "runs" / "train-local-0001.json"
        record = json.loads(record_path.read_text())
        record["packages"] = {"tool": "pip freeze", "file": "runs/train-local-0001.packages.txt"}
        record_path.write_text(json.dumps(record))
    out = make(project, "compare", "A=a", "B=b")
    no_traceback(out)
    assert "package numpy" in out.stdout


# ----------------------------------------------------------------- 5. files

def test_records_honour_the_umask(bake):
    project = bake()
    for mask, mode in ((0o027, 0o640), (0o022, 0o644), (0o077, 0o600)):
        exp = f"u{mask:o}"
        run(["bash", "-c", f"umask {mask:o} && make --no-print-directory new EXP={exp} && "
             f"make --no-print-directory results"], cwd=project, env=LOCAL)
        for path in (f"experiments/{exp}/metadata.json", f"experiments/{exp}/config.json", "results/results.csv",
                     "results/results.json"):
            assert stat.S_IMODE(os.stat(project / path).st_mode) == mode, (path, oct(mask))


def test_two_results_at_once_never_collide(bake):
    project = bake()
    for exp in ("a", "b", "c"):
        fake_run(project, exp, results=b'{"val_acc": 0.5}')
    for _ in range(20):
        procs = [subprocess.Popen(["make", "--no-print-directory", "results"], cwd=project, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        assert set(read_csv(project)) == {"a", "b", "c"}
    assert temp_files(project) == []


def test_a_file_that_cannot_be_written_is_one_line(bake):
    project = bake()
    make(project, "new", "EXP=a", env=LOCAL)
    (project / "results" / "results.csv").mkdir(parents=True)
    result = make(project, "results", check=False)
    assert result.returncode != 0
    assert error_line(result) == "error: cannot write results/results.csv: Is a directory"
    assert temp_files(project) == []
    shutil.rmtree(project / "experiments")
    (project / "experiments").write_text("not a directory")  # os.makedirs fails: run.py's last resort
    result = make(project, "new", "EXP=b", env=LOCAL, check=False)
    assert result.returncode != 0 and error_line(result) == "error: experiments: File exists"


@pytest.fixture
def small_disk():
    """A 3 MB tmpfs, or a skip where mounting is not permitted (never under CI=true)."""
    mount_point = Path(tempfile.mkdtemp(prefix="expflow-full-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        mount_point.rmdir()
        message = f"cannot mount a tmpfs here: {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)
    mount_point.rmdir()


def fill(directory: Path) -> None:
    """Write until the file system is full, to its last byte."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_disk_full_is_one_line_and_leaves_nothing_half_written(bake, small_disk):
    project = bake(output_dir=small_disk)
    fake_run(project, "a", results=b'{"val_acc": 0.5}')
    make(project, "results")
    before = (project / "results" / "results.csv").read_bytes()
    fill(small_disk)
    result = make(project, "results", check=False)
    assert result.returncode != 0
    assert error_line(result) == "error: cannot write results/results.csv: No space left on device"
    assert (project / "results" / "results.csv").read_bytes() == before
    result = make(project, "new", "EXP=b", env=LOCAL, check=False)
    assert result.returncode != 0
    assert re.fullmatch(r"error: (could not create experiment b \(experiments/b\)|cannot write experiments/"
                        r"\.new-b-\w+/config\.json): No space left on device", error_line(result)), result.stderr
    assert not (project / "experiments" / "b").exists()
    assert temp_files(project) == []


def test_unreadable_metadata_is_a_warning_not_new(bake):
    base = Path(tempfile.mkdtemp(prefix="expflow-alice-"))
    try:
        project = bake(output_dir=base)
        for exp in ("hidden", "plain"):
            make(project, "new", f"EXP={exp}", env=LOCAL)
        subprocess.run(["chown", "-R", "alice:alice", str(base)], check=True)
        (project / "experiments" / "hidden" / "metadata.json").chmod(0)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "COLUMNS": "300"}
        status = make(project, "status", env=env, user="alice")
        assert "WARNING: experiment hidden: metadata.json: Permission denied" in status.stderr
        rows = {line.split()[0]: line for line in status.stdout.splitlines()[1:] if line.strip()}
        assert rows["hidden"].split()[1] == "UNKNOWN" and "metadata.json: Permission denied" in rows["hidden"]
        assert rows["plain"].split()[1] == "NEW"
        make(project, "results", env=env, user="alice")
        csv_rows = read_csv(project)
        assert csv_rows["hidden"]["state"] == "UNKNOWN"
        assert csv_rows["hidden"]["warnings"] == "metadata.json: Permission denied"
        listed = make(project, "list", env=env, user="alice").stdout
        assert re.search(r"^hidden\s+UNKNOWN", listed, re.M)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_symlinked_experiments_are_refused(bake, tmp_path):
    victim = bake("victim", output_dir=tmp_path / "v")
    make(victim, "new", "EXP=target", env=LOCAL)
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        metadata_path = victim / "experiments" / "target" / "metadata.json"
        metadata = json.loads(metadata_path.read_text())
        metadata["jobs"].append({"stage": "train", "job_id": "local-1", "backend": "local", "pid": sleeper.pid,
                                 "submitted": "2024-01-01T00:00:00+00:00", "resources": {},
                                 "log": "logs/train-local-1.out"})
        metadata_path.write_text(json.dumps(metadata))
        project = bake("mine", output_dir=tmp_path / "m")
        make(project, "new", "EXP=real", env=LOCAL)
        os.symlink(victim / "experiments" / "target", project / "experiments" / "lnk")
        refusal = "error: experiments/lnk is a symbolic link: refused (expflow never follows links under experiments/)"
        for args in (["cancel", "EXP=lnk"], ["archive", "EXP=lnk"], ["train", "EXP=lnk"], ["logs", "EXP=lnk"],
                     ["compare", "A=lnk", "B=real"], ["new", "EXP=copy", "FROM=lnk"]):
            result = make(project, *args, env=LOCAL, check=False)
            assert result.returncode != 0 and error_line(result) == refusal, args
        assert sleeper.poll() is None  # another project's job was not cancelled
        assert os.path.islink(project / "experiments" / "lnk")
        status = make(project, "status", env=LOCAL)
        assert "WARNING: experiments/lnk is a symbolic link: skipped" in status.stderr
        assert "lnk" not in status.stdout and "real" in status.stdout
        make(project, "results", env=LOCAL)
        assert set(read_csv(project)) == {"real"}
    finally:
        os.killpg(sleeper.pid, signal.SIGKILL)
        sleeper.wait()


def test_experiment_id_with_a_trailing_newline_is_refused(bake):
    project = bake()
    result = make(project, "new", "EXP=abc\n", env=LOCAL, check=False)
    assert result.returncode != 0 and error_line(result).startswith("error: invalid experiment id 'abc\\n'")
    assert not (project / "experiments" / "abc\n").exists()


# ----------------------------------------------------------------- 6. settings.env has one grammar

def targets(project: Path) -> list[str]:
    makefile = (project / "Makefile").read_text()
    return [t for t in re.findall(r"^([a-z][a-z-]*):.*## ", makefile, re.M) if t != "help"]


@pytest.mark.parametrize("line", ['METRIC_PATTERN_2="$(touch {f})"', "METRIC_PATTERN_2=$(touch {f})",
                                  "METRIC_PATTERN_2='x'$(touch {f})", "`touch {f}`", "export GPUS='1'",
                                  "PS4='$(touch {f})'", "GPUS='1'\r"])
def test_settings_off_the_grammar_are_refused_by_every_target_and_the_job(bake, tmp_path, line):
    project = bake()
    make(project, "new", "EXP=x", env=LOCAL)
    pwned = tmp_path / "pwned"
    with open(project / "settings.env", "a") as handle:
        handle.write(line.format(f=pwned) + "\n")
    number = len((project / "settings.env").read_text().splitlines())
    variables = ["EXP=x", "A=x", "B=x", "SWEEP=configs/sweep-example.yaml", "METRIC=loss"]
    for target in targets(project):
        result = make(project, target, *variables, env=LOCAL, check=False, timeout=30)
        assert result.returncode != 0, target
        assert error_line(result).startswith(f"error: settings.env line {number}: "), (target, result.stderr)
    job = run(["bash", "scripts/train.sbatch", "experiments/x"], cwd=project, check=False, timeout=60)
    assert job.returncode != 0
    assert f"error: settings.env line {number}: " in job.stderr and "nothing was run" in job.stderr
    assert not pwned.exists()
    assert os.listdir(project / "experiments" / "x" / "runs") == []  # the job never started


def test_the_job_gets_the_settings_as_literal_values(bake, tmp_path):
    project = bake()
    pwned = tmp_path / "pwned"
    with open(project / "settings.env", "a") as handle:
        handle.write(f"MY_NOTE='it'\\''s $(touch {pwned}) `id` \"q\" \\n'  # a comment\nMY_WORD=a@b%c+d=e:f,g./-\n")
    settings = files.read_settings(str(project))
    assert settings["MY_NOTE"] == f"it's $(touch {pwned}) `id` \"q\" \\n" and settings["MY_WORD"] == "a@b%c+d=e:f,g./-"
    shown = run(["bash", "-c", "set -euo pipefail; source expflow_runtime/job-lib.sh; load_settings; "
                 "printf '%s\\0' \"$MY_NOTE\" \"$MY_WORD\" \"$PROJECT_NAME\""], cwd=project).stdout
    assert shown.split("\0")[:3] == [settings["MY_NOTE"], settings["MY_WORD"], settings["PROJECT_NAME"]]
    assert not pwned.exists()


def test_settings_grammar_and_writer_agree():
    for value in ("", "plain", "it's", "'", "a'\\''b", "$(x) `y` \"z\" \\ # not a comment", "tab\there", "caf\u00e9"):
        line = f"KEY={files.quote_setting(value)}"
        assert files.parse_setting(line) == ("KEY", value)
        bash = subprocess.run(["bash", "-c", f"{line}\nprintf '%s' \"$KEY\""], capture_output=True, text=True)
        assert bash.stdout == value
    for bad in ("KEY=\"x\"", "KEY='x", "KEY=a b", "KEY=$HOME", "KEY=~/x", "KEY=a*", "key='x'", "KEY='x'#c",
                "PATH='/x'", "BASH_ENV='/x'", "KEY='a\0b'", "KEY='x'\r"):
        with pytest.raises(ValueError):
            files.parse_setting(bad)
    for value in ("a\nb", "a\0b", "a\rb"):
        with pytest.raises(files.ProjectError, match="cannot hold a newline"):
            files.write_settings(os.devnull, {"GPUS": value})


@pytest.mark.parametrize("variable", ["GPUS=1\n", "PARTITION=a\nb", "MEM=4G\r", "SET=optimizer.lr=0.1\nx=1"])
def test_make_variables_with_a_newline_are_refused_when_given(bake, variable):
    project = bake()
    result = make(project, "new", "EXP=n", variable, env=LOCAL, check=False)
    assert result.returncode != 0
    assert "cannot hold a newline, NUL or other control character" in error_line(result)
    assert not (project / "experiments" / "n").exists()


@pytest.mark.parametrize("args", [["--set", "env_venv=a\nb"], ["--set", "partition=cs\n"], ["--set", "env_conda=x\0"]])
def test_expflow_refuses_a_set_value_with_a_newline(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no SLURM: nothing detected
    assert main(["scaffold", "p", "--no-input", *args]) != 0
    assert "cannot hold a newline, NUL or other control character" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_expflow_refuses_a_project_name_with_a_trailing_newline(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert main(["scaffold", "p\n", "--no-input"]) != 0
    assert "invalid project name" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
