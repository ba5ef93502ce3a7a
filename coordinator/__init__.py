"""coordinator: Redis-backed leader election, membership and fencing."""

from coordinator.errors import (
    BackendUnavailableError,
    CoordinatorError,
    CorruptDataError,
    InvalidArgumentError,
    UnexpectedReplyError,
)
from coordinator.event_models import (
    AutomationModeChanged,
    Disconnected,
    LeaderChanged,
    LeaseReleased,
    OtherEvent,
    Resync,
    StateChanged,
    WatchEvent,
)
from coordinator.history import events_since
from coordinator.lease import Lease, read_lease
from coordinator.modes import AutomationMode, ModeChange, get_automation_mode, set_automation_mode
from coordinator.records import FenceResult, LeaseRecord, LeaseResult, ReleaseResult
from coordinator.watch import watch, watch_with_callbacks

__all__ = [
    "AutomationMode",
    "AutomationModeChanged",
    "BackendUnavailableError",
    "CoordinatorError",
    "CorruptDataError",
    "Disconnected",
    "FenceResult",
    "InvalidArgumentError",
    "LeaderChanged",
    "Lease",
    "LeaseRecord",
    "LeaseReleased",
    "LeaseResult",
    "ModeChange",
    "OtherEvent",
    "ReleaseResult",
    "Resync",
    "StateChanged",
    "UnexpectedReplyError",
    "WatchEvent",
    "events_since",
    "get_automation_mode",
    "read_lease",
    "set_automation_mode",
    "watch",
    "watch_with_callbacks",
]
