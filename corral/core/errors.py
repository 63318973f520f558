"""User-facing errors: one sentence naming the file, line, key or field, and the fix."""


class CorralError(Exception):
    """A user mistake (bad input, bad config). The CLI prints the message alone and exits 2."""
