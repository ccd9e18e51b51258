"""The one exception family of expflow: the CLI prints any of them as one line."""


class ExpflowError(Exception):
    """Base class: a problem the user can fix, said in one sentence."""


class UsageError(ExpflowError):
    """A command-line value is wrong: an unknown --set key, a malformed value."""


class TargetExistsError(ExpflowError):
    """The directory scaffold would create already exists; nothing was written."""


class TemplateError(ExpflowError):
    """The template could not be found or rendered (cookiecutter's errors, translated)."""


class SchedulerError(ExpflowError):
    """SLURM could not be asked (sinfo failed), or it refused a request that
    `sbatch --test-only` checked (scaffold --check-access)."""


class UpdateError(ExpflowError):
    """`expflow update` cannot proceed: not a project, a project newer than this
    expflow, uncommitted changes without --force, git missing for a merge, or the
    recorded answers or pristine copies are gone. Raised before anything is written."""
