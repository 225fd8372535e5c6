"""The errors a user can cause. Each message is the one line shown to the user (the CLI prints it
and exits with status 2); everything else is a bug and keeps its traceback."""


class UserError(RuntimeError):
    """Bad input that is not a config or artefact problem (a parameter out of range, a failed solve
    the user must act on, ...)."""


class ConfigError(UserError, ValueError):
    """A user error in a study config: names the key, the value and what was expected."""


class ArtefactError(UserError):
    """A missing or unreadable artefact."""
