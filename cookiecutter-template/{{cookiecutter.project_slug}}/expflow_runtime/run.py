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
import io
import os
import signal
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
    "du": ("disk", "cmd_du"),
    "prune-logs": ("disk", "cmd_prune_logs"),
}
# job-side steps: command -> (module, function); these take (arguments, environment)
JOB_STEPS = {
    "job-record": ("jobrecord", "job_record"),
    "job-id": ("jobrecord", "job_id"),
    "job-seconds": ("jobrecord", "job_seconds"),
    "job-launch": ("jobrecord", "job_launch"),
    "run-local-array": ("submit", "run_local_array_command"),
    "job-settings": ("profiles", "job_settings"),
    "config-flags": ("configs", "config_flags"),
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


def tolerant_output():
    """Text the terminal's encoding cannot show (a C locale on Python 3.6) comes
    out replaced, not as a traceback."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if getattr(stream, "errors", "replace") not in ("strict", "surrogateescape"):
            continue
        if hasattr(stream, "reconfigure"):  # Python 3.7+
            stream.reconfigure(errors="replace")
        elif hasattr(stream, "buffer"):
            stream.flush()
            setattr(sys, name, io.TextIOWrapper(stream.buffer, encoding=stream.encoding, errors="replace",
                                                line_buffering=stream.line_buffering))


def one_line_errors(package, call):
    """call(); a ProjectError, or as a last resort an OSError (disk full, no
    permission, read-only file system) naming its file, is one line on stderr
    and exit status 1."""
    try:
        return call()
    except package.files.ProjectError as exc:
        print("error: {}".format(exc), file=sys.stderr)
    except OSError as exc:
        names = [package.files.display_path(name) for name in (exc.filename, exc.filename2) if name]
        print("error: {}{}".format(" -> ".join(names) + ": " if names else "", exc.strerror or exc), file=sys.stderr)
    return 1


def main(argv=None, env=None):
    # The Makefile starts this process with Ctrl-C ignored, so that one landing
    # while Python starts is no traceback; from here on it stops the command with
    # one line (what was submitted by then is written down: ledger.py).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run(sys.argv[1:] if argv is None else argv, os.environ if env is None else env)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        # The command is over: a Ctrl-C now would only interrupt Python's own
        # exit, as "Exception ignored in ... KeyboardInterrupt" from a __del__.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run(argv, env):
    package = import_runtime()
    tolerant_output()
    if argv[:1] and argv[0] in JOB_STEPS:
        step = function(package, *JOB_STEPS[argv[0]])
        return one_line_errors(package, lambda: step(argv[1:], env))
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print("usage: run.py {}".format(" | ".join(sorted(COMMANDS))), file=sys.stderr)
        return 2
    target = COMMANDS[argv[0]]
    module, name = target[2:] if env.get("SWEEP") and len(target) == 4 else target[:2]

    def command():
        package.files.read_settings(package.files.ROOT)  # every target refuses a settings.env off the grammar
        function(package, "values", "check_variables")(argv[0], env)  # every value given, before anything runs
        return function(package, module, name)(env)

    return one_line_errors(package, command)


if __name__ == "__main__":
    sys.exit(main())
