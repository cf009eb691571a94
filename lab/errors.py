"""The errors of the `mirrorlab` library: every problem it reports is a `LabError`."""
from __future__ import annotations


class LabError(Exception):
    """Something the lab could not do, with a one-line message saying what and why."""


class UsageError(LabError):
    """A request the lab cannot act on as given (an unknown VM, a bad setting): the caller's
    mistake, not the lab's (the CLI exits 2 for it, as for other bad input)."""


class ApiError(LabError):
    """The controller's REST API refused a request: its HTTP `status` and its error message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ApiUnreachable(LabError):
    """The controller's REST API does not answer (the controller is stopped, or not yet up)."""
