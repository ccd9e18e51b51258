"""Values are data, everywhere (issue 18): hostile values through every channel
a value enters by, each kept literally or refused with one line, never run.

Channels: each `--set` key, interactive answers, environment values read at
detection, the -o directory (expflow scaffold); each make variable, SET values,
config and sweep file contents, project paths (the generated project). For
every case: no canary file made by an injected command, nothing written
outside the project, the value kept literally or refused with a one-line
error (no traceback), and config.yaml read back equal to config.json. Most
cases call the runtime's functions directly; a representative subset of each
channel runs `expflow scaffold` or `make` for real.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import make, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_local_backend import LOCAL

from expflow import build_context, scaffold
from expflow.cli import main
from expflow.context import settable_keys
from expflow.detect import detect
from expflow.errors import ExpflowError
from expflow.runtime import module

files = module("files")
configs = module("configs")
values = module("values")
sweepspec = module("sweepspec")

CANARY = "CANARY"  # each test replaces it with a path in its own tmp_path; the path must never exist
TEMPLATE_VALUES = [
    "{{ 7*7 }}",
    "{{ cycler.__init__.__globals__.os.system('touch CANARY') }}",
    "{% x %}",
    "{# x",
    "{% raw %}{{ 7*7 }}{% endraw %}",
    "a'b\"c $(touch CANARY) `touch CANARY` \\ ; | & {{",
    "\u00e9 \u4e2d {{ '\\x41' }}",
    "\u00b2",
]
GADGET = TEMPLATE_VALUES[1]


def with_canary(value: str, canary: Path) -> str:
    return value.replace(CANARY, str(canary))


def one_line(message: str) -> str:
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


def same(a, b) -> bool:
    """Equality with NaN equal to NaN (a config may hold .nan)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_yaml_is_json(yaml_text: str, json_text: str) -> None:
    """config.yaml, read with PyYAML and with the runtime's own reader, equals config.json."""
    expected = json.loads(json_text)
    assert same(yaml.safe_load(yaml_text), expected), yaml_text
    assert same(configs.read_yaml_subset(yaml_text), expected), yaml_text


def entries(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


# ----------------------------------------------------------------- 1. every --set key

SET_CASES = [(key, index) for key in settable_keys() for index in range(len(TEMPLATE_VALUES))]


@pytest.mark.parametrize(("key", "index"), SET_CASES, ids=[f"{k}-{i}" for k, i in SET_CASES])
def test_every_set_key_is_rendered_literally_or_refused(tmp_path, key, index):
    canary = tmp_path / "canary"
    value = with_canary(TEMPLATE_VALUES[index], canary)
    out = tmp_path / "out"
    try:
        project = scaffold(build_context("p", None, {key: value}), out)
    except ExpflowError as exc:
        assert key in one_line(str(exc)).lower() or key.upper() in str(exc)
        assert not out.exists() or entries(out) == set()
    else:
        if key == "project_name":
            assert (project / "README.md").read_text().splitlines()[0] == f"# {value}"
        else:
            assert files.read_settings(str(project))[key.upper()] == value
        assert json.loads((project / "expflow_runtime" / "answers.json").read_text())[key] == value
        assert not (out / "49").exists() and entries(out) == {"p"} | {f"p/{e}" for e in entries(project)}
    assert not canary.exists()
    assert not (Path(os.environ["HOME"]) / ".cookiecutter_replay").exists()


# ----------------------------------------------------------------- 2. interactive answers

QUESTIONS = {"Partition": "", "GPU type": "", "GPUs per job": "0", "Account": "", "Time limit": "",
             "Make the project a git repository": "n"}
KINDS = {"conda": ["env_conda"], "venv": ["env_venv"], "modules": ["env_modules"],
         "apptainer": ["env_container", "env_container_overlay"]}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("index", range(len(TEMPLATE_VALUES)))
def test_interactive_answers_are_literal(tmp_path, capsys, kind, index):
    canary = tmp_path / "canary"
    value = with_canary(TEMPLATE_VALUES[index], canary)

    def ask(question: str) -> str:
        if question.startswith("How do jobs"):
            return kind
        return next((answer for prefix, answer in QUESTIONS.items() if question.startswith(prefix)), value)

    assert main(["scaffold", "p", "--no-detect", "-o", str(tmp_path / "out")], ask=ask) == 0, capsys.readouterr().err
    settings = files.read_settings(str(tmp_path / "out" / "p"))
    assert all(settings[key.upper()] == value for key in KINDS[kind])
    assert not canary.exists()


@pytest.mark.parametrize("answer", ["{{ 7*7 }}", "a\nb", "{% x %}"])
def test_an_interactive_answer_a_setting_cannot_take_is_one_line(tmp_path, capsys, answer):
    def ask(question: str) -> str:
        return answer if question.startswith("Partition") else ""

    assert main(["scaffold", "p", "--no-detect", "-o", str(tmp_path / "out")], ask=ask) == 1
    assert one_line(capsys.readouterr().err.strip()).startswith("expflow: error: ")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- 3. values read at detection

DETECTED = ["{{ 7*7 }}", GADGET, "{% x %}", "sp ace 'q' \"d\" $(touch CANARY)", "\u00e9\u4e2d"]


@pytest.mark.parametrize("index", range(len(DETECTED)))
def test_detected_scratch_and_conda_are_literal(tmp_path, index):
    canary = tmp_path / "canary"
    name = with_canary(DETECTED[index], canary)
    scratch = tmp_path / "scratch" / name
    scratch.mkdir(parents=True)
    conda_base = f"{tmp_path}/conda/{name}"
    bin_dir = tmp_path / "bin"  # no SLURM on this PATH
    bin_dir.mkdir()
    facts = detect(env={"SCRATCH": str(scratch), "CONDA_EXE": f"{conda_base}/bin/conda", "PATH": str(bin_dir)})
    assert facts.scratch == str(scratch) and facts.conda_base == conda_base
    project = scaffold(build_context("p", facts, {}), tmp_path / "out")
    settings = files.read_settings(str(project))
    assert settings["SCRATCH_ROOT"] == str(scratch) and settings["ENV_CONDA_BASE"] == conda_base
    assert not canary.exists()


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x1bb", "\udcff"])
def test_detected_values_a_setting_cannot_take_are_left_out_with_a_warning(tmp_path, bad):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    facts = detect(env={"SCRATCH": f"/tmp/{bad}", "CONDA_EXE": f"/opt/{bad}/bin/conda", "PATH": str(bin_dir)})
    assert facts.conda_base == "" and "\n" not in facts.scratch
    assert any(w.startswith("$SCRATCH holds") for w in facts.warnings)
    assert any(w.startswith("$CONDA_EXE holds") for w in facts.warnings)
    scaffold(build_context("p", facts, {}), tmp_path / "out")


# ----------------------------------------------------------------- 4. the output directory (-o)

OUT_DIRS = ["{{ 7*7 }}", "{% x %}", "{# x", GADGET, "with space", "quote'\"", "$HOME $(touch CANARY)",
            "\u00e9\u4e2d", "per%xcent", "back\\slash"]


@pytest.mark.parametrize("index", range(len(OUT_DIRS)))
def test_the_output_directory_is_never_rendered(tmp_path, monkeypatch, capsys, index):
    canary = tmp_path / "canary"
    monkeypatch.chdir(tmp_path)
    out = with_canary(OUT_DIRS[index], canary)
    assert main(["scaffold", "p", "--no-input", "--no-detect", "-o", f"out/{out}"]) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / out / "p" / "settings.env").is_file()
    assert os.listdir(tmp_path / "out") == [out.split("/")[0]] and not canary.exists()


@pytest.mark.parametrize("out", ["per%xcent", "per%jcent", "back\\slash", "tab\there", "new\nline", "cr\rx"])
def test_a_location_slurm_cannot_address_is_refused_at_scaffold(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    code = main(["scaffold", "p", "--no-input", "--no-detect", "--set", "backend=slurm", "-o", f"out/{out}"])
    assert code == 1
    assert "cannot create a project at" in one_line(capsys.readouterr().err.strip())
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- 5. make variables (the rules)

MAKE_VALUES = ["\u00b2", "\u0663", "-1", "0", "$(touch CANARY)", "`touch CANARY`", "a\nb", "1\n", " 1", "+1",
               "1e3", "99999999999", "{{ 7*7 }}", "\udcff", "..", "'", "x\x00", "\u00e9"]
# variable -> a command that reads it
READER = {"EXP": "logs", "FROM": "new", "SET": "new", "DESC": "new", "SWEEP": "status", "N": "logs",
          "MAX_PARALLEL": "sweep", "STAGE": "logs", "MODE": "best", "STATE": "best", "METRIC": "best",
          "FILTER": "results", "SORT": "results", "COLUMNS": "results", "BACKEND": "train", "GPUS": "new",
          "PARTITION": "new", "TIME": "new", "MEM": "train", "NODES": "sweep", "MAIL_TYPE": "new"}
MAKE_CASES = [(name, index) for name in READER for index in range(len(MAKE_VALUES))]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """One project for the cases that only read (BACKEND=local in its settings)."""
    return scaffold(build_context("hv", None, {"backend": "local"}), tmp_path_factory.mktemp("make"))


@pytest.mark.parametrize(("name", "index"), MAKE_CASES, ids=[f"{n}-{i}" for n, i in MAKE_CASES])
def test_each_make_variable_is_checked_when_given(project, monkeypatch, name, index):
    monkeypatch.setattr(files, "ROOT", str(project))
    value = MAKE_VALUES[index]
    try:
        values.check_variables(READER[name], {name: value})
    except files.ProjectError as exc:
        assert name in one_line(str(exc)), str(exc)
        return
    assert not files.CONTROL_CHARACTER.search(value) and not files.SURROGATE.search(value)
    if name in ("N", "MAX_PARALLEL"):
        assert int(value) >= 1 and value.isascii() and value.isdigit()
    if name == "EXP":
        assert files.ID_PATTERN.match(value)


@pytest.mark.parametrize("value", ["0", "-1", "$(touch x)", "\u00b2", "1.5", "1 "])
def test_max_parallel_and_n_take_whole_numbers_from_one(value):
    for name in ("N", "MAX_PARALLEL"):
        with pytest.raises(files.ProjectError, match=f"^{name}="):
            values.whole_number(name, value)


def test_unicode_digits_never_reach_int():
    assert not values.is_count("\u00b2") and not values.is_count("\u0663") and values.is_count("12")
    assert values.terminal_width({"COLUMNS": "\u00b2"}) is None and values.terminal_width({"COLUMNS": "80"}) == 80
    for name, value in (("GPUS", "\u0663"), ("NODES", "\u0661"), ("TIME", "\u0661:00:00")):
        with pytest.raises(files.ProjectError, match=f"^{name}="):
            values.resource(name, value)


@pytest.mark.parametrize("filter_value", ['x="a\\x"', "x='a", 'x="\\ud800"', "=1", "a", 'x="a"b"', "x='a'b'"])
def test_filter_values_with_bad_quotes_or_escapes_are_one_line(filter_value):
    with pytest.raises(files.ProjectError) as info:
        module("harvest").parse_filter(filter_value, ["x"])
    one_line(str(info.value))


# ----------------------------------------------------------------- 6. SET values: config.yaml equals config.json

SET_VALUES = ["*", "!foo", "%x", "@x", "`x`", "&a", "*a", "|", ">", "1e999", "-1e999", ".nan", ".inf", "1e5",
              "0x1F", "012", "1_000", "1:30", "2024-01-01", "yes", "No", "on", "~", "null", "''", "'it''s'",
              '"a\\nb: 1"', '"a\\u2028b"', '"\\u0085x"', '"tab\\there"', "- a", "#x", "a#b", "[1, 'a,b', \"c]\"]",
              "[]", "[yes, ~, 1e999]", "{a: 1}", "?", "a: b", ":", "'", '"', '"a\\x"', '"\\ud800"', "[1",
              "[[1]]", "[a,,b]", "\u00e9\u4e2d", "\ufeff", "\u2028", "<<", "="]


def set_round_trip(value: str):
    """(config, config.yaml text, config.json text) as make new writes them, or a ProjectError."""
    base = {"model": {"name": "resnet", "depth": 50}, "optimizer": {"lr": 0.1}}
    overrides = f"model.name={value}"
    config = configs.apply_overrides(base, overrides)
    text = configs.comment_line(f"configs/default.yaml with SET={overrides}") + configs.dump_yaml_subset(config)
    return config, text, json.dumps(config)


@pytest.mark.parametrize("index", range(len(SET_VALUES)))
def test_set_values_keep_config_yaml_equal_to_config_json(index):
    try:
        config, text, json_text = set_round_trip(SET_VALUES[index])
    except files.ProjectError as exc:
        assert one_line(str(exc)).startswith("SET")
        return
    assert_yaml_is_json(text, json_text)
    assert list(yaml.safe_load(text)) == ["model", "optimizer"]  # no key of its own


def set_text(value) -> str:
    """A value as SET writes it: strings double-quoted (JSON escapes), lists [..]."""
    if isinstance(value, list):
        return "[" + ", ".join(set_text(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return configs._dump_scalar(value)


scalars = st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none())


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(scalars, st.lists(scalars, max_size=4)))
def test_property_any_typed_set_value_round_trips(value):
    config, text, json_text = set_round_trip(set_text(value))
    assert same(config["model"]["name"], value)
    assert_yaml_is_json(text, json_text)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc"))))
def test_property_any_typed_text_round_trips_or_is_one_line(text):
    try:
        _, yaml_text, json_text = set_round_trip(text)
    except files.ProjectError as exc:
        one_line(str(exc))
        return
    assert_yaml_is_json(yaml_text, json_text)


@settings(max_examples=200, deadline=None, database=None)
@given(st.dictionaries(st.text(min_size=1), st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=4))
def test_property_the_writer_quotes_keys_and_values(mapping):
    text = configs.dump_yaml_subset({"k": mapping} if mapping else {"k": {}})
    assert_yaml_is_json(text, json.dumps({"k": mapping}))


# ----------------------------------------------------------------- 7. config file contents (FROM)

CONFIG_FILES = {
    "nul": b"a: 1\n\x00\n",
    "latin1": "a: caf\u00e9\n".encode("latin-1"),
    "huge": b"a: " + b"x" * (1 << 20) + b"\n",
    "date": b"a: 2024-01-01\n",
    "int-key": b"1: a\n",
    "bool-key": b"on: x\n",
    "alias-loop": b"a: &x [*x]\n",
    "laughs": b"a: &a [1, 1]\nb: &b [*a, *a]\nc: [*b, *b]\n",
    "deep": b"a: " + b"[" * 200 + b"]" * 200 + b"\n",
    "python-tag": b"a: !!python/object/apply:os.system ['touch CANARY']\n",
    "binary-tag": b"a: !!binary aGVsbG8=\n",
    "set-tag": b"a: !!set {x: null}\n",
    "tab-indent": b"a:\n\tb: 1\n",
    "not-yaml": b"a: [\n",
    "escape": b'a: "\\x"\n',
    "surrogate": b'a: "\\ud800"\n',
    "plain": b"a: {{ 7*7 }}\n",
    "nan": b"a: .nan\nb: [1e999, -.inf]\n",
    "quoted-keys": b'"a: b": 1\n"#c": [x, "y,z"]\n',
}


@pytest.mark.parametrize("name", sorted(CONFIG_FILES))
def test_config_file_contents_are_data_or_one_line(tmp_path, name):
    path = tmp_path / "c.yaml"
    path.write_bytes(CONFIG_FILES[name].replace(b"CANARY", str(tmp_path / "canary").encode()))
    try:
        data = configs.load_yaml(str(path), "FROM")
    except files.ProjectError as exc:
        assert one_line(str(exc)).startswith(("FROM", str(path)))
    else:
        json_text = json.dumps(data)  # what config.json holds
        assert_yaml_is_json(configs.dump_yaml_subset(data), json_text)
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize("kind", ["fifo", "directory", "/dev/zero", "/proc/self/environ", "/dev/null-link"])
def test_files_that_are_not_text_files_are_refused_without_waiting(tmp_path, kind):
    path = {"directory": str(tmp_path), "/dev/zero": "/dev/zero", "/proc/self/environ": "/proc/self/environ"}.get(
        kind, str(tmp_path / "special"))
    if kind == "fifo":
        os.mkfifo(path)
    if kind == "/dev/null-link":
        os.symlink("/dev/null", path)
    with pytest.raises(files.ProjectError) as info:
        configs.load_yaml(path, "FROM")
    assert one_line(str(info.value)).startswith("FROM: ")


# ----------------------------------------------------------------- 8. sweep file contents (SWEEP)

SWEEPS = {
    "grid-list": "grid: [1, 2]\n",
    "grid-scalar": "grid:\n  optimizer.lr: 0.1\n",
    "zip-uneven": "zip:\n  optimizer.lr: [1]\n  model.depth: [1, 2]\n",
    "random-strings": "random:\n  samples: 2\n  optimizer.lr:\n    uniform: [a, b]\n",
    "random-int-float": "random:\n  samples: 2\n  model.depth:\n    int: [1.5, 3]\n",
    "random-huge": "random:\n  samples: 100000000\n  optimizer.lr:\n    uniform: [0, 1]\n",
    "grid-huge": "grid:\n" + "".join(f"  k{i}: [{', '.join(map(str, range(10)))}]\n" for i in range(6)),
    "resources-unknown": "grid:\n  optimizer.lr: [0.1]\nresources:\n  PATH: /evil\n",
    "resources-bad": "grid:\n  optimizer.lr: [0.1]\nresources:\n  GPUS: \"$(touch CANARY)\"\n",
    "name-int": "name: 123\ngrid:\n  optimizer.lr: [0.1]\n",
    "name-bad": "name: ../x\ngrid:\n  optimizer.lr: [0.1]\n",
    "set-list": "set: [1]\ngrid:\n  optimizer.lr: [0.1]\n",
    "key-bad": "grid:\n  \"a..b\": [1]\nallow_new: true\n",
    "newline-value": "grid:\n  model.name: [\"a\\nb: 1\", \"*\", \"|\"]\n",
    "hostile-values": "grid:\n  model.name: [\"{{ 7*7 }}\", \"$(touch CANARY)\", \"1e999\", \"\\u2028x\"]\n",
    "base-missing": "base: /nonexistent.yaml\ngrid:\n  optimizer.lr: [0.1]\n",
    "base-binary": "base: /proc/self/environ\ngrid:\n  optimizer.lr: [0.1]\n",
}


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_file_contents_are_data_or_one_line(tmp_path, name):
    path = tmp_path / "s.yaml"
    path.write_text(SWEEPS[name].replace("CANARY", str(tmp_path / "canary")))
    try:
        spec = sweepspec.read_sweep_file(str(path))
        planned = sweepspec.planned_points(spec)
    except files.ProjectError as exc:
        one_line(str(exc))
        return
    for _, index, point, config in planned:  # as sweep.create_points writes each point's config.yaml
        text = configs.comment_line(f"sweep {spec['name']} point {index}: {sweepspec.point_text(point)}")
        assert_yaml_is_json(text + configs.dump_yaml_subset(config), json.dumps(config))
    assert not (tmp_path / "canary").exists()


# ----------------------------------------------------------------- 9. real make runs (a subset of each channel)

MAKE_RUNS = [
    ("logs-n-unicode", ["logs", "EXP=a", "N=\u00b2"], False),
    ("logs-n-zero", ["logs", "EXP=a", "N=0"], False),
    ("best-n-unicode", ["best", "N=\u00b2"], False),
    ("results-columns-unicode", ["results", "COLUMNS=\u00b2"], False),
    ("status-columns-unicode", ["status", "COLUMNS=\u00b2"], True),
    ("results-filter-escape", ["results", 'FILTER=id="a\\x"'], False),
    ("results-sort-dash", ["results", "SORT=-"], False),
    ("new-from-environ", ["new", "EXP=n1", "FROM=/proc/self/environ"], False),
    ("new-from-zero", ["new", "EXP=n2", "FROM=/dev/zero"], False),
    ("new-set-star", ["new", "EXP=n3", "SET=model.name=*"], True),
    ("new-set-gadget", ["new", "EXP=n4", "SET=model.name='`touch CANARY`' model.depth=$$(touch$${IFS}CANARY)"], True),
    ("new-set-list", ["new", "EXP=n11", "SET=model.name=[1, 'a b', \"c,d\", yes]"], True),
    ("new-set-escape", ["new", "EXP=n5", 'SET=model.name="a\\x"'], False),
    ("new-set-infinity", ["new", "EXP=n6", "SET=optimizer.lr=1e999"], True),
    ("new-set-json-newline", ["new", "EXP=n7", 'SET=model.name="a\\nb: 1"'], True),
    ("new-desc-gadget", ["new", "EXP=n8", "DESC=$$(touch CANARY) `touch CANARY` {{ 7*7 }}"], True),
    ("new-gpus-arabic", ["new", "EXP=n9", "GPUS=\u0663"], False),
    ("new-exp-newline", ["new", "EXP=n10\n"], False),
    ("sweep-parallel-zero", ["sweep", "SWEEP=configs/sweep-example.yaml", "MAX_PARALLEL=0"], False),
    ("sweep-parallel-gadget", ["sweep", "SWEEP=configs/sweep-example.yaml", "MAX_PARALLEL=$$(touch CANARY)"], False),
    ("sweep-parallel-unicode", ["sweep", "SWEEP=configs/sweep-example.yaml", "MAX_PARALLEL=\u00b2"], False),
    ("sweep-from-environ", ["sweep", "SWEEP=/proc/self/environ"], False),
]


@pytest.mark.parametrize(("args", "ok"), [case[1:] for case in MAKE_RUNS], ids=[case[0] for case in MAKE_RUNS])
def test_make_with_hostile_variables(project, tmp_path, args, ok):
    canary = tmp_path / "canary"
    args = [with_canary(arg, canary) for arg in args]
    outside = entries(project.parent)
    before = entries(project / "experiments") if (project / "experiments").exists() else set()
    result = make(project, *args, env=LOCAL, check=False)
    assert "Traceback" not in result.stderr and not canary.exists()
    assert entries(project.parent) - outside <= {f"{project.name}/{e}" for e in entries(project)}
    if not ok:
        assert result.returncode != 0
        lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        if args[0] in ("new", "sweep"):  # refused before anything was created
            after = entries(project / "experiments") if (project / "experiments").exists() else set()
            assert after == before
        return
    assert result.returncode == 0, result.stderr
    exp = next((arg[4:] for arg in args if arg.startswith("EXP=")), None)
    if args[0] == "new" and exp:
        exp_dir = project / "experiments" / exp
        assert_yaml_is_json((exp_dir / "config.yaml").read_text(), (exp_dir / "config.json").read_text())


# ----------------------------------------------------------------- 10. project paths

PROJECT_DIRS = ["with space", "quote'\"", "dollar $HOME $(touch CANARY)", "\u00e9\u4e2d", "per%xcent%j",
                "back\\slash", "{{ 7*7 }}"]


@pytest.mark.parametrize("index", range(len(PROJECT_DIRS)))
def test_project_paths_work_locally_and_slurm_refuses_what_it_cannot_address(tmp_path, index):
    canary = tmp_path / "canary"
    directory = tmp_path / with_canary(PROJECT_DIRS[index], canary)
    directory.mkdir(parents=True)
    project = scaffold(build_context("p", None, {}), directory)
    make(project, "new", "EXP=a", f"SET=model.name='`touch {canary}`'", env=LOCAL)
    exp_dir = project / "experiments" / "a"
    assert_yaml_is_json((exp_dir / "config.yaml").read_text(), (exp_dir / "config.json").read_text())
    slurm = make(project, "train", "EXP=a", "DRY_RUN=1", env={"BACKEND": "slurm"}, check=False)  # submits nothing
    if "%" in str(project) or "\\" in str(project):
        assert "error: the project's path" in slurm.stderr and "Traceback" not in slurm.stderr
    else:
        assert slurm.returncode == 0 and "DRY_RUN: nothing submitted" in slurm.stdout
    assert not (exp_dir / "jobs").exists() or os.listdir(exp_dir / "jobs") == []
    make(project, "train", "EXP=a", "DRY_RUN=1", env=LOCAL)
    assert not canary.exists()


def test_a_local_job_runs_in_a_hostile_project_path(tmp_path):
    directory = tmp_path / "sp ace 'q' \"d\" $x \u00e9"
    directory.mkdir()
    project = scaffold(build_context("p", None, {"backend": "local"}), directory)
    make(project, "train", "EXP=a", "SET=training.epochs=1")
    log = project / "experiments" / "a" / "logs"

    def done() -> bool:
        records = list((project / "experiments" / "a" / "runs").glob("train-*.json"))
        return bool(records) and json.loads(records[0].read_text()).get("state") in ("COMPLETED", "FAILED")

    wait_for(done, timeout=60, what="the local job")
    record = json.loads(next((project / "experiments" / "a" / "runs").glob("train-*.json")).read_text())
    assert record["state"] == "COMPLETED", [p.read_text() for p in log.iterdir()]


def test_scaffold_writes_no_replay_and_leaves_no_temporary_directory(tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    scaffold(build_context("p", None, {"env_conda": "{{ 7*7 }}"}), tmp_path / "out")
    assert os.listdir(tmp_path / "tmp") == []
    assert not any(path.name == ".cookiecutter_replay" for path in Path(os.environ["HOME"]).rglob("*"))
