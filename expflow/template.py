"""Render the bundled cookiecutter template into a new project.

Every value reaches the rendered files as data, never as template text:
cookiecutter renders each value of its context with Jinja before it fills the
templates, so each is handed over as a Jinja string literal of itself
(literal()), which renders to exactly that text. cookiecutter also renders the
path it writes into, so it renders into a fresh temporary directory whose path
holds no Jinja, and the project is moved to where it belongs; its replay file
(every answer) goes to that directory too, and is removed with it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

# cookiecutter's first render loads its Jinja extensions (arrow, slugify: 0.02 s):
# imported here, they load while `expflow scaffold` waits for SLURM, not after it
from cookiecutter import extensions  # noqa: F401
from cookiecutter.exceptions import CookiecutterException
from cookiecutter.main import cookiecutter
from jinja2 import TemplateError as JinjaError

from expflow.answers import record_scaffold
from expflow.context import check_location
from expflow.errors import ExpflowError, TargetExistsError, TemplateError
from expflow.fileops import remove_pycache
from expflow.runtime import template_dir

# Characters a Jinja string literal may hold as they are; any other is written \UXXXXXXXX.
LITERAL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.,:/@+=-")
JINJA_MARKS = ("{{", "{%", "{#")


def literal(value: str) -> str:
    """Jinja source that renders to value, whatever value holds: a string literal
    (Jinja decodes its escapes as Python's unicode-escape does)."""
    if not value:
        return ""
    body = "".join(char if char in LITERAL_SAFE else f"\\U{ord(char):08x}" for char in value)
    return '{{ "' + body + '" }}'


def literal_context(context: Mapping[str, str]) -> dict[str, str]:
    """context with each value as literal() of itself (private "_" keys are not rendered)."""
    return {key: value if key.startswith("_") else literal(str(value)) for key, value in context.items()}


def render(template: Path, context: Mapping[str, str], output_dir: Path) -> Path:
    """Render template with context (values taken literally) into output_dir,
    which must exist; returns the project directory created there, named as
    cookiecutter names it. Nothing is written anywhere else."""
    with tempfile.TemporaryDirectory(prefix="expflow-render-") as tmp:
        if any(mark in tmp for mark in JINJA_MARKS):
            raise TemplateError(f"the temporary directory {tmp} holds Jinja syntax: set TMPDIR to another one")
        work = Path(tmp)
        config = {"replay_dir": str(work / "replay"), "cookiecutters_dir": str(work / "cookiecutters")}
        try:
            created = Path(cookiecutter(str(template), no_input=True, extra_context=literal_context(context),
                                        output_dir=str(work / "out"), default_config=config))
        except (CookiecutterException, JinjaError, OSError) as exc:
            raise TemplateError(f"could not render {template.name}: {exc}") from exc
        target = output_dir / created.name
        move_directory(created, target)
    return target


def move_directory(source: Path, target: Path) -> None:
    """Rename source to target (never over an existing one); across file systems,
    copy it, and a copy that fails half way is removed."""
    if os.path.lexists(target):
        raise TargetExistsError(f"{target} already exists; choose another name or -o directory")
    try:
        os.rename(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise TemplateError(f"cannot create {target}: {exc.strerror or exc}") from exc
    try:
        shutil.copytree(source, target, symlinks=True)
    except FileExistsError:  # made meanwhile, by someone else: not ours to remove
        raise TargetExistsError(f"{target} already exists; choose another name or -o directory") from None
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise TemplateError(f"cannot create {target}: {exc}") from exc


def scaffold(context: dict[str, str], output_dir: str | Path = ".") -> Path:
    """Render the template with context (from build_context) under output_dir.

    The project directory must not exist: nothing of the user's is ever
    overwritten, and a failed render leaves nothing behind.
    """
    target = Path(output_dir) / context["project_slug"]
    check_location(target, slurm=context.get("backend") == "slurm")  # the CLI knows more: targets_slurm
    if os.path.lexists(target):
        raise TargetExistsError(f"{target} already exists; choose another name or -o directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TemplateError(f"cannot create {target.parent}: {exc.strerror or exc}") from exc
    project = render(template_dir(), context, target.parent)
    try:
        remove_pycache(project)  # a checkout's template has the bytecode of runtime.py's imports
        record_scaffold(project, context, template=template_dir())  # what `expflow update` merges against
    except (ExpflowError, OSError) as exc:
        shutil.rmtree(project, ignore_errors=True)
        raise TemplateError(f"could not record the project's answers: {exc}") from exc
    return project
