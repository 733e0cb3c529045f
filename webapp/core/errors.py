"""Errors a user can cause, each with the exit code and HTTP status it maps to.

The CLI prints ``str(error)`` as one line and exits with ``exit_code``; the web layer answers with
``http_status``. Nothing here imports Flask or sqlite3, so every layer can raise and catch them.
"""


class PipelineError(Exception):
    """Base class: a problem the operator can fix, reported as one readable line."""

    exit_code = 1
    http_status = 500


class InvalidInput(PipelineError):
    """A value the operator gave is not acceptable (wrong pipeline type, bad limit...)."""

    exit_code = 2
    http_status = 400


class ConflictError(PipelineError):
    """A compare-and-set failed: the pipeline changed since the version the caller saw."""

    exit_code = 3
    http_status = 409

    def __init__(self, message, current=None):
        super().__init__(message)
        self.current = current


class DatabaseBusy(PipelineError):
    """Another process held the write lock for longer than the write budget."""

    exit_code = 4
    http_status = 503


class DatabaseUnusable(PipelineError):
    """The database is missing, not SQLite, unreadable, unwritable or of a foreign shape."""

    exit_code = 5
    http_status = 503


class ForeignTable(DatabaseUnusable):
    """``pipeline_config`` exists with columns of another tool (README: "Troubleshooting")."""


class UnknownPipelineType(PipelineError):
    """The newest row names a type this tool does not manage (written by another tool).

    Raised by :func:`webapp.uploader.active_pipeline`, so an uploader can hold its batch instead
    of guessing a bucket. ``value`` is the stored value, exactly as read.
    """

    exit_code = 6
    http_status = 500

    def __init__(self, value):
        super().__init__(
            f"the current pipeline_config row names {value!r}, not a type this tool manages; "
            "hold the batch and set a known type"
        )
        self.value = value
