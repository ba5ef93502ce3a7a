"""Every Redis key and channel name of a namespace, built in one place.

All keys of a namespace share the hash tag ``{namespace}`` so that multi-key
scripts land in one slot on Redis Cluster.
"""

from __future__ import annotations

import re

from coordinator.errors import InvalidArgumentError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a usable namespace or lease name, else raise."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidArgumentError(
            f"{kind} {value!r} must be 1-64 characters of letters, digits, '_', '.', '-',"
            " starting with a letter or digit"
        )
    return value


def check_node_id(kind: str, value: str) -> str:
    """Return ``value`` if it is a usable node or holder id, else raise."""
    if not isinstance(value, str) or not _NODE_ID.match(value):
        raise InvalidArgumentError(
            f"{kind} {value!r} must be 1-128 characters of letters, digits, '_', '.', ':', '@',"
            " '-', starting with a letter or digit"
        )
    return value


def _tag(namespace: str) -> str:
    return "{" + check_name("namespace", namespace) + "}"


def lease_key(namespace: str, lease: str) -> str:
    """The hash holding the live lease; it expires with the lease TTL."""
    return f"{_tag(namespace)}:lease:{check_name('lease name', lease)}"


def tenure_key(namespace: str, lease: str) -> str:
    """The hash that outlives the lease: highest term granted and the last holder."""
    return f"{_tag(namespace)}:tenure:{check_name('lease name', lease)}"


def handoff_key(namespace: str, lease: str) -> str:
    """String naming the node an operator asked the lease to be handed over to."""
    return f"{_tag(namespace)}:handoff:{check_name('lease name', lease)}"


def leases_key(namespace: str) -> str:
    """Sorted set, the registry of many leases: member = lease name, score = Redis ms added."""
    return f"{_tag(namespace)}:leases"


def leases_version_key(namespace: str) -> str:
    """Integer string, incremented by every change of the registry (in the same script)."""
    return f"{_tag(namespace)}:leases:version"


def affinity_key(namespace: str) -> str:
    """Hash: field = lease name, value = its preferred holders' node ids, comma-separated."""
    return f"{_tag(namespace)}:affinity"


def preferred_key(namespace: str) -> str:
    """Sorted set of preferred controllers scored by their last heartbeat (Redis ms)."""
    return f"{_tag(namespace)}:preferred"


def heartbeats_key(namespace: str) -> str:
    """Sorted set of node ids scored by their last heartbeat (Redis ms)."""
    return f"{_tag(namespace)}:heartbeats"


def controller_key(namespace: str, node_id: str) -> str:
    """Hash describing one controller (host, role, status, ...)."""
    return f"{_tag(namespace)}:controller:{check_node_id('node id', node_id)}"


def no_controller_key(namespace: str) -> str:
    """A key no controller ever has and nothing writes: stands in for "no controller" where a
    script takes a controller hash in KEYS, so its key count stays fixed."""
    return f"{_tag(namespace)}:no-controller"


def automation_mode_key(namespace: str) -> str:
    """String holding the namespace's automation mode (running | draining | paused)."""
    return f"{_tag(namespace)}:automation_mode"


def lease_mode_key(namespace: str, lease: str) -> str:
    """String holding one lease's own automation mode (many leases): the stricter of it and
    the namespace's applies to that lease."""
    return f"{_tag(namespace)}:automation_mode:{check_name('lease name', lease)}"


def history_key(namespace: str) -> str:
    """Capped stream with every event ever published, for 'who led when'."""
    return f"{_tag(namespace)}:events:history"


def fenced_key(namespace: str, name: str) -> str:
    """A key for fenced writes that shares the namespace's hash tag."""
    return f"{_tag(namespace)}:fenced:{name}"


def events_channel(namespace: str) -> str:
    """The pub/sub channel every event of a namespace is published on."""
    return f"{check_name('namespace', namespace)}:events"
