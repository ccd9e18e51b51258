"""Render the bundled cookiecutter template into a new project."""

from __future__ import annotations

import shutil
from pathlib import Path

from cookiecutter.exceptions import CookiecutterException
from cookiecutter.main import cookiecutter

from expflow.answers import record_scaffold
from expflow.errors import ExpflowError, TargetExistsError, TemplateError
from expflow.fileops import remove_pycache
from expflow.runtime import template_dir


def scaffold(context: dict[str, str], output_dir: str | Path = ".") -> Path:
    """Render the template with context (from build_context) under output_dir.

    The project directory must not exist: nothing of the user's is ever
    overwritten, and a failed render leaves nothing behind.
    """
    target = Path(output_dir) / context["project_slug"]
    if target.exists():
        raise TargetExistsError(f"{target} already exists; choose another name or -o directory")
    try:
        created = cookiecutter(
            str(template_dir()),
            no_input=True,
            extra_context=context,
            output_dir=str(output_dir),
            default_config=True,  # a user's ~/.cookiecutterrc must not change the result
        )
    except (CookiecutterException, OSError) as exc:
        raise TemplateError(f"could not render the project: {exc}") from exc
    project = Path(created)
    try:
        remove_pycache(project)  # a checkout's template has the bytecode of runtime.py's imports
        record_scaffold(project, context, template=template_dir())  # what `expflow update` merges against
    except (ExpflowError, OSError) as exc:
        shutil.rmtree(project, ignore_errors=True)
        raise TemplateError(f"could not record the project's answers: {exc}") from exc
    return project
