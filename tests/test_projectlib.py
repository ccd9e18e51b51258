"""The generated project's file handling: settings.env, the YAML subset reader,
experiment ids, atomic JSON."""

import json
import os

import pytest
import yaml
from conftest import TEMPLATE_PROJECT

from expflow.runtime import module

files = module("files")
configs = module("configs")

SUBSET = """\
# comment
model:
  name: "res net"   # trailing comment
  depth: 50
  tags: [a, 'b c', 3]
optimizer:
  lr: 1.0e-3
  nesterov: true
  schedule: null
layers:
  - 64
  - 32
url: http://example.org/#anchor
empty_list: []
"""


def test_yaml_subset_agrees_with_pyyaml():
    assert configs.read_yaml_subset(SUBSET) == yaml.safe_load(SUBSET)
    default = (TEMPLATE_PROJECT / "configs" / "default.yaml").read_text()
    assert configs.read_yaml_subset(default) == yaml.safe_load(default)


@pytest.mark.parametrize("text", ["a: {b: 1}\n", "a: &x 1\n", "a:\n\tb: 1\n", "- 1\n", "a: 1\nb\n", "a: |\n  x\n"])
def test_yaml_outside_the_subset_is_named(text):
    with pytest.raises(configs.YamlSubsetError, match="config line"):
        configs.read_yaml_subset(text)


def test_flatten():
    assert configs.flatten({"a": {"b": 1, "c": {"d": [1]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1], "e": {}}


def test_settings_are_data(tmp_path):
    (tmp_path / "settings.env").write_text("# c\nA='x y'\nB='it'\\''s'  # note\n\nC=plain\n")
    assert files.read_settings(str(tmp_path)) == {"A": "x y", "B": "it's", "C": "plain"}
    for bad in ("echo hi\n", "A='x' B='y'\n", "lower='x'\n", "A='unclosed\n", "B=\"it's\"\n"):
        (tmp_path / "settings.env").write_text(bad)
        with pytest.raises(files.ProjectError, match="settings.env line 1"):
            files.read_settings(str(tmp_path))


def test_overrides_come_from_the_environment():
    settings = {"GPUS": "1", "GPU_TYPE": "l40s", "TIME": "01:00:00"}
    merged = files.setting_overrides(settings, {"GPUS": "2", "GPU_TYPE": ""}, ("GPUS", "GPU_TYPE", "TIME"))
    assert merged == {"GPUS": "2", "GPU_TYPE": "", "TIME": "01:00:00"}


def test_write_json_atomic_leaves_no_temp_file(tmp_path):
    path = tmp_path / "m.json"
    files.write_json_atomic(str(path), {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    with pytest.raises(TypeError):
        files.write_json_atomic(str(path), {"x": object()})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_read_json_reports_instead_of_raising(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    data, problem = files.read_json(str(tmp_path / "bad.json"))
    assert data is None and problem.startswith("bad.json:")
    assert files.read_json(str(tmp_path / "missing.json")) == (None, "")
