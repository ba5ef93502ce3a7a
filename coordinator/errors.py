"""One error root for everything the coordinator raises, and its few children."""

from __future__ import annotations


class CoordinatorError(Exception):
    """Root of every error raised by the coordinator."""


class InvalidArgumentError(CoordinatorError, ValueError):
    """An argument or setting is unusable; raised before anything reaches Redis."""


class BackendUnavailableError(CoordinatorError):
    """Redis could not be reached, or did not answer in time."""


class NotCurrentMasterError(BackendUnavailableError):
    """acquire.lua refused a grant: this server is not the master the Sentinels name now
    (a replaced master not yet demoted), or no Sentinel named one (see sentinel_master.py)."""


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


class FencedWriteRefused(CoordinatorError):
    """A fenced write was refused: ``term`` is not (or no longer) this process's live
    tenure, so nothing was written. ``result`` is the ``FenceResult`` (``current_term`` is
    the live lease's term, None when nobody holds it)."""

    def __init__(self, key: str, result: object) -> None:
        term = getattr(result, "term", None)
        current = getattr(result, "current_term", None)
        super().__init__(f"fenced write to {key} refused: term {term} is not the live tenure "
                         f"(the lease's term is {current})")
        self.key = key
        self.result = result
