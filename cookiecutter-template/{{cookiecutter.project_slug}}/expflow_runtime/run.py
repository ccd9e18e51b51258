# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""The one entry point of the project's machinery: the Makefile and the job side
call `python3 -I expflow_runtime/run.py COMMAND [ARGS]`.

COMMAND is a make target (train, status, ...) or a job-side step (job-record,
job-id, run-local-array). Values come from the environment, which is where make
puts command-line variables, so no value a user types passes through a shell.
A ProjectError becomes one line on stderr and exit status 1.

Standard library only, Python 3.6+.
"""

import importlib
import os
import sys

# command -> (module, function); a second pair is the command's form for a sweep
# (make eval SWEEP=..., make cancel SWEEP=...). Commands take the environment.
COMMANDS = {
    "new": ("experiment", "cmd_new"),
    "train": ("experiment", "cmd_train"),
    "eval": ("experiment", "cmd_eval", "sweep", "cmd_eval"),
    "resume": ("experiment", "cmd_resume"),
    "cancel": ("experiment", "cmd_cancel", "sweep", "cmd_cancel"),
    "archive": ("experiment", "cmd_archive"),
    "list": ("experiment", "cmd_list"),
    "logs": ("experiment", "cmd_logs"),
    "tail": ("experiment", "cmd_tail"),
    "status": ("results", "cmd_status"),
    "results": ("results", "cmd_results"),
    "best": ("results", "cmd_best"),
    "sweep": ("sweep", "cmd_sweep"),
    "sweep-retry": ("sweep", "cmd_retry"),
    "resources": ("resources", "cmd_resources"),
    "check": ("resources", "cmd_check"),
    "compare": ("compare", "cmd_compare"),
    "report": ("report", "cmd_report"),
    "plot": ("report", "cmd_plot"),
}
# job-side steps: command -> (module, function); these take (arguments, environment)
JOB_STEPS = {
    "job-record": ("jobrecord", "job_record"),
    "job-id": ("jobrecord", "job_id"),
    "run-local-array": ("submit", "run_local_array_command"),
}


def import_runtime():
    """Import this folder as the package expflow_runtime. The project's root goes
    LAST on sys.path, so no file of the user's shadows the standard library, and
    this folder itself comes off it (Python before 3.11 puts it first)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here] + [os.path.dirname(here)]
    return importlib.import_module("expflow_runtime")


def function(package, module, name):
    return getattr(importlib.import_module("{}.{}".format(package.__name__, module)), name)


def main(argv=None, env=None):
    argv = sys.argv[1:] if argv is None else argv
    env = os.environ if env is None else env
    package = import_runtime()
    if argv[:1] and argv[0] in JOB_STEPS:
        return function(package, *JOB_STEPS[argv[0]])(argv[1:], env)
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print("usage: run.py {}".format(" | ".join(sorted(COMMANDS))), file=sys.stderr)
        return 2
    target = COMMANDS[argv[0]]
    module, name = target[2:] if env.get("SWEEP") and len(target) == 4 else target[:2]
    try:
        return function(package, module, name)(env)
    except package.files.ProjectError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
