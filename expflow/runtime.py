"""The generated project's stdlib-only modules, imported from the bundled template.

scripts/slurmkit.py in the template is the one implementation of the SLURM
parsers and option checks: the generated project runs it without expflow, and
expflow imports the very same file from here instead of keeping a copy.
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from expflow.errors import TemplateError

TEMPLATE_PROJECT = "{{cookiecutter.project_slug}}"


def template_dir() -> Path:
    """The cookiecutter template: inside the installed package (wheel), or beside
    the package in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "template", here.parent / "cookiecutter-template"):
        if (candidate / "cookiecutter.json").is_file():
            return candidate
    raise TemplateError(f"expflow's template is missing (looked in {here / 'template'})")


def load_script_module(name: str) -> ModuleType:
    """Import scripts/<name>.py of the template as module expflow_runtime_<name>."""
    qualified = f"expflow_runtime_{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    path = template_dir() / TEMPLATE_PROJECT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(qualified, path)
    if spec is None or spec.loader is None:
        raise TemplateError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module


slurmkit = load_script_module("slurmkit")
