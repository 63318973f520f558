"""User-facing errors: one sentence naming the file, line, key or field, and the fix."""


class CorralError(Exception):
    """A user mistake (bad input, bad config). The CLI prints the message alone and exits 2."""


class BudgetSpent(CorralError):
    """A call budget (a judge's, a reward's) is spent. A training run stops cleanly at its last
    finished step, saved and resumable; anywhere else it is an error that names the budget."""
