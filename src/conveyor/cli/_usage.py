class UsageError(Exception):
    """A mistake in how the command was called: printed as one line, exit code 2."""
