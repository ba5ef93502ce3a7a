"""coordinator: Redis-backed leader election, membership and fencing."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typed for mypy; every public name loads on first use below
    from coordinator.daemon import Daemon, PassResult
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
    from coordinator.hooks import Hooks, LeaderContext
    from coordinator.leader_work import Leadership
    from coordinator.lease import FencedWrite, Lease, read_lease
    from coordinator.modes import AutomationMode, ModeChange, get_automation_mode, set_automation_mode
    from coordinator.records import FenceResult, LeaseRecord, LeaseResult, ReleaseResult
    from coordinator.settings import Settings, load_settings
    from coordinator.threaded import BackgroundDaemon
    from coordinator.watch import watch, watch_with_callbacks

# everything loads lazily: `coordinator status` imports only what it uses
_LAZY = {
    "BackendUnavailableError": "coordinator.errors",
    "CoordinatorError": "coordinator.errors",
    "CorruptDataError": "coordinator.errors",
    "FencedWriteRefused": "coordinator.errors",
    "InvalidArgumentError": "coordinator.errors",
    "LeaseLostError": "coordinator.errors",
    "UnexpectedReplyError": "coordinator.errors",
    "AutomationModeChanged": "coordinator.event_models",
    "Disconnected": "coordinator.event_models",
    "LeaderChanged": "coordinator.event_models",
    "LeaseExpired": "coordinator.event_models",
    "LeaseReleased": "coordinator.event_models",
    "OtherEvent": "coordinator.event_models",
    "Resync": "coordinator.event_models",
    "StateChanged": "coordinator.event_models",
    "WatchEvent": "coordinator.event_models",
    "events_since": "coordinator.history",
    "Lease": "coordinator.lease",
    "FencedWrite": "coordinator.lease",
    "Leadership": "coordinator.leader_work",
    "read_lease": "coordinator.lease",
    "AutomationMode": "coordinator.modes",
    "ModeChange": "coordinator.modes",
    "get_automation_mode": "coordinator.modes",
    "set_automation_mode": "coordinator.modes",
    "FenceResult": "coordinator.records",
    "LeaseRecord": "coordinator.records",
    "LeaseResult": "coordinator.records",
    "ReleaseResult": "coordinator.records",
    "watch": "coordinator.watch",
    "watch_with_callbacks": "coordinator.watch",
    "Daemon": "coordinator.daemon",
    "PassResult": "coordinator.daemon",
    "BackgroundDaemon": "coordinator.threaded",
    "Hooks": "coordinator.hooks",
    "LeaderContext": "coordinator.hooks",
    "Settings": "coordinator.settings",
    "load_settings": "coordinator.settings",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'coordinator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
