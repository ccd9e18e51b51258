# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Will the job's environment set up? What settings.env names (ENV_MODULES,
ENV_CONDA, ENV_VENV, ENV_CONTAINER), checked on the login node by make check,
before a job waits in the queue to find out. job-lib.sh sets it up in the job.

Standard library only, Python 3.6+.
"""

import os

from . import slurmkit

# job-lib.sh's own way to find the `module` command (a batch shell may lack it);
# each module name is an argument ("$@"), never part of the script's text.
JOB_LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "job-lib.sh")
MODULE_SCRIPT = ('source "$1"; shift; ensure_module_command 2>/dev/null || exit 3; missing=(); '
                 'for name in "$@"; do module is-avail "$name" 2>/dev/null || missing+=("$name"); done; '
                 'printf "%s\\n" "${missing[@]}"')


KEYS = ("ENV_MODULES", "ENV_CONDA", "ENV_VENV", "ENV_CONTAINER", "ENV_CONTAINER_OVERLAY")


def problems(settings, run=slurmkit.run_command):
    """One sentence per part of the job's environment that would not set up."""
    found = []
    if settings.get("ENV_MODULES", "").split():
        found += module_problems(settings["ENV_MODULES"].split(), run)
    if settings.get("ENV_CONDA"):
        found += conda_problems(settings["ENV_CONDA"], settings.get("ENV_CONDA_BASE", ""))
    if settings.get("ENV_VENV") and not os.path.isfile(os.path.join(settings["ENV_VENV"], "bin", "activate")):
        found.append("ENV_VENV={!r} is not a virtualenv (no bin/activate)".format(settings["ENV_VENV"]))
    for key in ("ENV_CONTAINER", "ENV_CONTAINER_OVERLAY"):
        path = settings.get(key, "")
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            found.append("{}={!r} is not a readable file".format(key, path))
    return found


def module_problems(names, run):
    result = run(["bash", "-c", MODULE_SCRIPT, "module-check", JOB_LIB] + names, timeout=60)
    if result.returncode == 3:
        return ["ENV_MODULES is set but there is no `module` command here (Lmod or Environment Modules)"]
    if not result.ok:
        return ["could not ask `module` about ENV_MODULES ({})".format(slurmkit.describe_failure(result))]
    missing = result.stdout.split()
    return ["module {} is not known to `module` (ENV_MODULES; module avail lists them)".format(name)
            for name in missing]


def conda_base(explicit):
    """conda's install directory: ENV_CONDA_BASE, else from CONDA_EXE (as job-lib.sh finds it)."""
    if explicit:
        return explicit
    exe = os.environ.get("CONDA_EXE", "")
    return os.path.dirname(os.path.dirname(exe)) if exe else ""


def conda_problems(name, explicit_base):
    base = conda_base(explicit_base)
    if not base or not os.path.isfile(os.path.join(base, "etc", "profile.d", "conda.sh")):
        return ["ENV_CONDA is set but conda.sh is not found{}; set ENV_CONDA_BASE to conda's install "
                "directory".format(" under " + base if base else "")]
    path = name if "/" in name else base if name == "base" else os.path.join(base, "envs", name)
    if not os.path.isdir(os.path.join(path, "conda-meta")):
        return ["ENV_CONDA={!r}: no conda environment at {}".format(name, path)]
    return []
