"""expflow: detect a SLURM cluster once, generate a self-contained experiment project.

The library API that the CLI calls: detect() probes the environment,
build_context() turns what it found into template values, scaffold() renders
cookiecutter-template/ into a new project.
"""

from typing import Any

from expflow.errors import ExpflowError

__version__ = "0.4.0"

__all__ = ["ExpflowError", "__version__", "build_context", "detect", "scaffold"]

# Imported on first use (PEP 562), so that `expflow --version` does not pay for
# cookiecutter and Jinja2: where each name lives.
_LAZY = {"build_context": "expflow.context", "detect": "expflow.detect", "scaffold": "expflow.template"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
