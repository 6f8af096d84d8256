"""One error type for every failure a user can fix: the CLI prints it as one line, no traceback."""


class DoctorSunError(Exception):
    """A clear, user-facing error that names the item at fault (a path, a record id, a model name)."""
