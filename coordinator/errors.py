"""One error root for everything the coordinator raises, and its few children."""

from __future__ import annotations


class CoordinatorError(Exception):
    """Root of every error raised by the coordinator."""


class InvalidArgumentError(CoordinatorError, ValueError):
    """An argument or setting is unusable; raised before anything reaches Redis."""


class BackendUnavailableError(CoordinatorError):
    """Redis could not be reached, or did not answer in time."""


class CorruptDataError(CoordinatorError):
    """A key holds data the coordinator did not write; it is reported, never overwritten."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key = key
        self.detail = detail


class UnexpectedReplyError(CoordinatorError):
    """A script answered with something the coordinator does not know; never guessed at."""


class LeaseLostError(CoordinatorError):
    """Leadership ended (lease lost or local deadline passed) while leader work ran."""
