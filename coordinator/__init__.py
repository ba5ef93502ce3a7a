"""coordinator: Redis-backed leader election, membership and fencing."""

from coordinator.errors import (
    BackendUnavailableError,
    CoordinatorError,
    CorruptDataError,
    InvalidArgumentError,
    UnexpectedReplyError,
)
from coordinator.lease import Lease, read_lease
from coordinator.records import FenceResult, LeaseRecord, LeaseResult, ReleaseResult

__all__ = [
    "BackendUnavailableError",
    "CoordinatorError",
    "CorruptDataError",
    "FenceResult",
    "InvalidArgumentError",
    "Lease",
    "LeaseRecord",
    "LeaseResult",
    "ReleaseResult",
    "UnexpectedReplyError",
    "read_lease",
]
