"""coordinator: Redis-backed leader election, membership and fencing."""

from typing import TYPE_CHECKING

from coordinator.errors import (
    BackendUnavailableError,
    CoordinatorError,
    CorruptDataError,
    FencedWriteRefused,
    InvalidArgumentError,
    LeaseLostError,
    UnexpectedReplyError,
)
from coordinator.event_models import (
    AutomationModeChanged,
    Disconnected,
    LeaderChanged,
    LeaseExpired,
    LeaseReleased,
    OtherEvent,
    Resync,
    StateChanged,
    WatchEvent,
)
from coordinator.history import events_since
from coordinator.lease import FencedWrite, Lease, read_lease
from coordinator.modes import AutomationMode, ModeChange, get_automation_mode, set_automation_mode
from coordinator.records import FenceResult, LeaseRecord, LeaseResult, ReleaseResult
from coordinator.watch import watch, watch_with_callbacks

if TYPE_CHECKING:  # typed for mypy; loaded on first use below
    from coordinator.daemon import Daemon, PassResult
    from coordinator.hooks import Hooks, LeaderContext
    from coordinator.leader_work import Leadership
    from coordinator.settings import Settings, load_settings
    from coordinator.threaded import BackgroundDaemon

# the daemon and its thread facade load lazily: `coordinator status` need not import them
_LAZY = {"Daemon": "coordinator.daemon", "PassResult": "coordinator.daemon",
         "BackgroundDaemon": "coordinator.threaded", "Hooks": "coordinator.hooks",
         "LeaderContext": "coordinator.hooks", "Leadership": "coordinator.leader_work",
         "Settings": "coordinator.settings",
         "load_settings": "coordinator.settings"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coordinator' has no attribute {name!r}")

__all__ = [
    "AutomationMode",
    "AutomationModeChanged",
    "BackendUnavailableError",
    "BackgroundDaemon",
    "CoordinatorError",
    "CorruptDataError",
    "Daemon",
    "Disconnected",
    "FenceResult",
    "FencedWrite",
    "FencedWriteRefused",
    "Hooks",
    "InvalidArgumentError",
    "LeaderChanged",
    "LeaderContext",
    "Leadership",
    "Lease",
    "LeaseExpired",
    "LeaseLostError",
    "LeaseRecord",
    "LeaseReleased",
    "LeaseResult",
    "ModeChange",
    "OtherEvent",
    "PassResult",
    "ReleaseResult",
    "Resync",
    "Settings",
    "StateChanged",
    "UnexpectedReplyError",
    "WatchEvent",
    "events_since",
    "get_automation_mode",
    "load_settings",
    "read_lease",
    "set_automation_mode",
    "watch",
    "watch_with_callbacks",
]
