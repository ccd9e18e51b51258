"""expflow: detect a SLURM cluster once, generate a self-contained experiment project.

The library API that the CLI calls: detect() probes the environment,
build_context() turns what it found into template values, scaffold() renders
cookiecutter-template/ into a new project.
"""

from expflow.context import build_context
from expflow.detect import detect
from expflow.errors import ExpflowError
from expflow.template import scaffold

__version__ = "0.1.0"

__all__ = ["ExpflowError", "__version__", "build_context", "detect", "scaffold"]
