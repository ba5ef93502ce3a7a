"""coordinator: Redis-backed leader election, membership and fencing."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typed for mypy; every public name loads on first use below
    from coordinator.daemon.daemon import Daemon, PassResult
    from coordinator.daemon.hooks import Hooks, LeaderContext
    from coordinator.daemon.leader_work import Leadership
    from coordinator.daemon.threaded import BackgroundDaemon
    from coordinator.errors import (
        BackendUnavailableError,
        CoordinatorError,
        CorruptDataError,
        FencedWriteRefused,
        InvalidArgumentError,
        LeaseLostError,
        UnexpectedReplyError,
    )
    from coordinator.leases.node import LeaseNode
    from coordinator.leases.registry import add_leases, list_leases, remove_leases
    from coordinator.protocol.event_models import (
        AutomationModeChanged,
        Disconnected,
        LeaderChanged,
        LeaseExpired,
        LeaseReleased,
        LeasesChanged,
        OtherEvent,
        Resync,
        StateChanged,
        WatchEvent,
    )
    from coordinator.protocol.lease import FencedWrite, Lease, read_lease
    from coordinator.protocol.modes import AutomationMode, ModeChange, get_automation_mode, set_automation_mode
    from coordinator.protocol.records import FenceResult, LeaseRecord, LeaseResult, ReleaseResult
    from coordinator.settings import Settings, load_settings
    from coordinator.watching.history import events_since
    from coordinator.watching.watch import watch, watch_with_callbacks

# everything loads lazily: `coordinator status` imports only what it uses
_LAZY = {
    "BackendUnavailableError": "coordinator.errors",
    "CoordinatorError": "coordinator.errors",
    "CorruptDataError": "coordinator.errors",
    "FencedWriteRefused": "coordinator.errors",
    "InvalidArgumentError": "coordinator.errors",
    "LeaseLostError": "coordinator.errors",
    "UnexpectedReplyError": "coordinator.errors",
    "AutomationModeChanged": "coordinator.protocol.event_models",
    "Disconnected": "coordinator.protocol.event_models",
    "LeaderChanged": "coordinator.protocol.event_models",
    "LeaseExpired": "coordinator.protocol.event_models",
    "LeaseReleased": "coordinator.protocol.event_models",
    "OtherEvent": "coordinator.protocol.event_models",
    "Resync": "coordinator.protocol.event_models",
    "StateChanged": "coordinator.protocol.event_models",
    "WatchEvent": "coordinator.protocol.event_models",
    "events_since": "coordinator.watching.history",
    "Lease": "coordinator.protocol.lease",
    "FencedWrite": "coordinator.protocol.lease",
    "Leadership": "coordinator.daemon.leader_work",
    "read_lease": "coordinator.protocol.lease",
    "AutomationMode": "coordinator.protocol.modes",
    "ModeChange": "coordinator.protocol.modes",
    "get_automation_mode": "coordinator.protocol.modes",
    "set_automation_mode": "coordinator.protocol.modes",
    "FenceResult": "coordinator.protocol.records",
    "LeaseRecord": "coordinator.protocol.records",
    "LeaseResult": "coordinator.protocol.records",
    "ReleaseResult": "coordinator.protocol.records",
    "watch": "coordinator.watching.watch",
    "watch_with_callbacks": "coordinator.watching.watch",
    "Daemon": "coordinator.daemon.daemon",
    "PassResult": "coordinator.daemon.daemon",
    "BackgroundDaemon": "coordinator.daemon.threaded",
    "Hooks": "coordinator.daemon.hooks",
    "LeaderContext": "coordinator.daemon.hooks",
    "LeaseNode": "coordinator.leases.node",
    "LeasesChanged": "coordinator.protocol.event_models",
    "add_leases": "coordinator.leases.registry",
    "list_leases": "coordinator.leases.registry",
    "remove_leases": "coordinator.leases.registry",
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
    "LeaseNode",
    "LeaseRecord",
    "LeaseReleased",
    "LeaseResult",
    "LeasesChanged",
    "ModeChange",
    "OtherEvent",
    "PassResult",
    "ReleaseResult",
    "Resync",
    "Settings",
    "StateChanged",
    "UnexpectedReplyError",
    "WatchEvent",
    "add_leases",
    "events_since",
    "get_automation_mode",
    "list_leases",
    "load_settings",
    "read_lease",
    "remove_leases",
    "set_automation_mode",
    "watch",
    "watch_with_callbacks",
]
