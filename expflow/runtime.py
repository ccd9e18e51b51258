"""The generated project's runtime libraries, loaded from the bundled template.

The template's `expflow_runtime/` folder is the one implementation of the SLURM
parsers and option checks (`slurmkit`) and of the resource advisor's view
(`advice`): generated projects run them without expflow, and expflow loads the
very same files from here instead of keeping copies. They are loaded lazily, on
first use, as the private package `expflow._template_runtime`: nothing is put on
sys.path and no bytecode is written into the installed template.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from expflow.errors import TemplateError

TEMPLATE_PROJECT = "{{cookiecutter.project_slug}}"
RUNTIME_FOLDER = "expflow_runtime"
PACKAGE = "expflow._template_runtime"
# the runtime libraries expflow may use: leaves of the runtime's import graph
SHARED = ("slurmkit", "advice")


def template_dir() -> Path:
    """The cookiecutter template: inside the installed package (wheel), or beside
    the package in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "template", here.parent / "cookiecutter-template"):
        if (candidate / "cookiecutter.json").is_file():
            return candidate
    raise TemplateError(f"expflow's template is missing (looked in {here / 'template'})")


def runtime_dir() -> Path:
    return template_dir() / TEMPLATE_PROJECT / RUNTIME_FOLDER


def module(name: str) -> ModuleType:
    """The runtime module `name` (e.g. slurmkit), imported once from the template."""
    qualified = f"{PACKAGE}.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # the installed template must stay as shipped
    try:
        _package()
        return importlib.import_module(qualified)
    except (ImportError, SyntaxError) as exc:
        raise TemplateError(f"cannot load {RUNTIME_FOLDER}/{name}.py from {runtime_dir()}: {exc}") from exc
    finally:
        sys.dont_write_bytecode = writes_bytecode


def _package() -> ModuleType:
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    folder = runtime_dir()
    spec = importlib.util.spec_from_file_location(PACKAGE, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise TemplateError(f"cannot load {folder}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    try:
        spec.loader.exec_module(package)
    except BaseException:
        del sys.modules[PACKAGE]
        raise
    return package


def __getattr__(name: str) -> Any:
    """`from expflow.runtime import slurmkit` loads it then, not at import time."""
    if name in SHARED:
        return module(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
