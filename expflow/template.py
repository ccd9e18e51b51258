"""Render the bundled cookiecutter template into a new project."""

from __future__ import annotations

from pathlib import Path

from cookiecutter.exceptions import CookiecutterException
from cookiecutter.main import cookiecutter

from expflow.errors import TargetExistsError, TemplateError
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
    return Path(created)
