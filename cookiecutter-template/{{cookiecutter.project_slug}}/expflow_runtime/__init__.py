# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""expflow_runtime: the generated project's machinery (standard library only,
Python 3.6+). run.py is its entry point; docs/architecture.md of expflow draws
its layers: libraries below commands, arrows pointing down only."""

from . import files  # noqa: F401  (run.py reports files.ProjectError)
