"""The answers a project was rendered with, and the pristine copies of its
user-owned files: what `expflow update` needs to render the old and the new
release alike and to merge the user's edits.

Since 0.2.0 scaffold records both in the machinery folder:
    expflow_runtime/answers.json          the cookiecutter context (keys not starting with "_")
    expflow_runtime/pristine/<relpath>    each user-owned file as rendered
0.1.0 recorded neither; its answers are inferred from settings.env and README.md.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from expflow.errors import UpdateError
from expflow.fileops import atomic_write_bytes, atomic_write_json, tree_files

RUNTIME_DIR = "expflow_runtime"
ANSWERS_FILE = "answers.json"
PRISTINE_DIR = "pristine"

# settings.env key -> cookiecutter key, in 0.1.0 (each setting is the upper-case answer).
SETTING_KEYS = {
    "PROJECT_NAME": "project_slug", "BACKEND": "backend", "CLUSTER": "cluster",
    "SLURM_ACCOUNTING": "slurm_accounting", "MAX_ARRAY_SIZE": "max_array_size", "ACCOUNT": "account",
    "PARTITION": "partition", "GPU_TYPE": "gpu_type", "GPUS": "gpus", "NODES": "nodes", "CPUS": "cpus",
    "MEM": "mem", "TIME": "time", "QOS": "qos", "CONSTRAINT": "constraint", "MAIL_TYPE": "mail_type",
    "SCRATCH_ROOT": "scratch_root", "ENV_MODULES": "env_modules", "ENV_CONDA": "env_conda",
    "ENV_CONDA_BASE": "env_conda_base", "ENV_VENV": "env_venv", "ENV_CONTAINER": "env_container",
    "ENV_CONTAINER_OVERLAY": "env_container_overlay",
}
SUMMARY_LINE = re.compile(r"^# Written by `expflow scaffold` \((.*)\)\.\s*$")
SETTING_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def user_owned_files(project: Path) -> dict[str, Path]:
    """Every file of a rendered project outside the machinery folder: the user's."""
    return tree_files(project, skip_top=(RUNTIME_DIR,))


def template_defaults(template: Path) -> dict[str, Any]:
    try:
        with open(template / "cookiecutter.json") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise UpdateError(f"cannot read {template / 'cookiecutter.json'}: {exc}") from exc


def complete_answers(context: dict[str, Any], defaults: dict[str, Any]) -> dict[str, str]:
    """context plus the template's default for each key it lacks. Private keys
    ("_...") are left out, and so are defaults that are Jinja expressions
    (project_slug's): cookiecutter derives those again at each render."""
    answers = {key: str(value) for key, value in context.items() if not key.startswith("_")}
    for key, value in defaults.items():
        if key.startswith("_") or key in answers:
            continue
        if isinstance(value, list) and value:
            value = value[0]  # a choice variable: its first option is the default
        if isinstance(value, str) and "{{" not in value and "{%" not in value:
            answers[key] = value
    return answers


def record_scaffold(project_dir: Path, context: dict[str, Any], *, template: Path | None = None,
                    runtime_dir: Path | None = None, rendered: Path | None = None) -> None:
    """Record the answers and pristine copies of the user-owned files that a
    later `expflow update` merges against.

    context: the cookiecutter context the project was rendered with (completed
    with the template's defaults); rendered: the fresh render whose user-owned
    files are the pristine copies (default: project_dir, right after scaffold);
    runtime_dir: where to write them (default: project_dir/expflow_runtime).
    A template from before 0.2.0 has no machinery folder: nothing is recorded.
    """
    runtime = runtime_dir or project_dir / RUNTIME_DIR
    if not runtime.is_dir():
        return
    if template is None:
        from expflow.runtime import template_dir

        template = template_dir()
    atomic_write_json(runtime / ANSWERS_FILE, complete_answers(context, template_defaults(template)))
    pristine = runtime / PRISTINE_DIR
    if pristine.exists():
        shutil.rmtree(pristine)
    for relpath, path in user_owned_files(rendered or project_dir).items():
        atomic_write_bytes(pristine / relpath, path.read_bytes(), 0o644)


def read_answers(project: Path) -> dict[str, str]:
    """The answers a 0.2.0+ project recorded at scaffold (or at its last update)."""
    path = project / RUNTIME_DIR / ANSWERS_FILE
    try:
        answers = json.loads(path.read_text())
    except FileNotFoundError:
        raise UpdateError(f"{path} is missing: without the answers the project was generated with, "
                          "expflow cannot render its old version to merge against") from None
    except (OSError, ValueError) as exc:
        raise UpdateError(f"cannot read {path}: {exc}") from exc
    if not isinstance(answers, dict):
        raise UpdateError(f"{path} is not a JSON object")
    return {str(key): str(value) for key, value in answers.items()}


def read_pristine(project: Path) -> dict[str, bytes]:
    """The user-owned files as the project's version rendered them."""
    pristine = project / RUNTIME_DIR / PRISTINE_DIR
    if not pristine.is_dir():
        raise UpdateError(f"{pristine} is missing: without the files as generated, "
                          "expflow cannot tell your changes from the release's")
    return {relpath: path.read_bytes() for relpath, path in tree_files(pristine).items()}


# ----------------------------------------------------------------- 0.1.0

def read_settings(path: Path) -> dict[str, str]:
    """settings.env -> {KEY: value}, as the generated project reads it: KEY='value'
    lines (shell-quoted), comments and blank lines; anything else is an error."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UpdateError(f"cannot read {path}: {exc.strerror}") from exc
    settings = {}
    for number, line in enumerate(lines, 1):
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise UpdateError(f"{path.name} line {number}: {exc}") from None
        if not tokens:
            continue
        key, sep, value = tokens[0].partition("=")
        if len(tokens) != 1 or not sep or not SETTING_NAME.match(key):
            raise UpdateError(f"{path.name} line {number}: expected KEY='value', got {line!r}")
        settings[key] = value
    return settings


def infer_answers_0_1_0(project: Path, defaults: dict[str, Any]) -> dict[str, str]:
    """The answers of a 0.1.0 project, which recorded none.

    They are read back from settings.env (each answer is the upper-case setting
    of the same name), the comment line that names what scaffold detected, and
    README.md's title. The user may have edited settings.env since: then the
    "answers" are the edited values, and the base the update merges against
    already holds the user's values. That is acceptable only as this fallback,
    for 0.1.0 projects: the settings the user changed come out unchanged, since
    base and new render both carry them, while an answer recorded at scaffold
    (0.2.0 on) would let the merge tell the user's change from the release's.
    """
    settings = read_settings(project / "settings.env")
    context = {answer: settings[key] for key, answer in SETTING_KEYS.items() if key in settings}
    for line in (project / "settings.env").read_text().splitlines():
        match = SUMMARY_LINE.match(line)
        if match:
            context["detected_summary"] = match.group(1)
            break
    title = first_line(project / "README.md")
    if title.startswith("# ") and title[2:].strip():
        context["project_name"] = title[2:].strip()
    else:
        context["project_name"] = context.get("project_slug", project.name)
    context.setdefault("project_slug", context["project_name"].lower().replace(" ", "-"))
    return complete_answers(context, defaults)


def first_line(path: Path) -> str:
    try:
        with open(path) as handle:
            return handle.readline().rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return ""
