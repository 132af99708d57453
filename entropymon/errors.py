"""Exception classes of entropymon.

Each class's docstring is its description: the CLI prints ``str(error)`` as one line, so messages
name the argument, what was expected and what was found, and a fix when there is one.
"""


class EntropymonError(Exception):
    """Base class of every error entropymon raises on purpose."""


class InputError(EntropymonError, ValueError):
    """An argument has the wrong shape, dtype, range or content."""


class LogFormatError(EntropymonError):
    """A log file or run folder is missing, corrupt, truncated or not written by entropymon."""


class RunNotFoundError(EntropymonError, FileNotFoundError):
    """No entropymon run was found at the given path."""


class AnalysisError(EntropymonError, ValueError):
    """The data cannot support the requested analysis (too few points, constant input, ...)."""


class ImportFormatError(EntropymonError):
    """A file given to an importer is not in the format that importer reads."""


class IntegrationError(EntropymonError):
    """A trainer could not be attached to (unsupported version or configuration)."""
