"""Stopping a run from outside, cleanly: `request_stop(reason)` (safe from a signal handler or
another thread) makes the loop stop before its next step exactly as a spent budget does — the
last finished step is checkpointed and `run.resume=true` continues from it. The service's
pause uses it; so can any caller that runs the loop in-process."""
from __future__ import annotations

import threading

from corral.core.errors import BudgetSpent

_REQUESTED = threading.Event()
_REASON = ["stopped"]


def request_stop(reason: str = "stopped") -> None:
    _REASON[0] = reason
    _REQUESTED.set()


def clear_stop() -> None:
    _REQUESTED.clear()


def check_stop() -> None:
    """Raise BudgetSpent(reason) once a stop was requested (and forget the request)."""
    if _REQUESTED.is_set():
        _REQUESTED.clear()
        raise BudgetSpent(_REASON[0])
