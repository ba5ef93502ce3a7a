"""What a many-lease node reads once per renew interval to plan: the registry, who holds each
lease, and the live nodes competing for them, in two pipelined round trips and no key scans.

Round trip 1: TIME, the registry (``ZRANGE``), its version, the affinity hash and the
heartbeats sorted set. Round trip 2: per registered lease ``HMGET`` of its lease hash, and per
node heard from ``HMGET`` of its controller hash. A node counts when its record says it is
``alive``, competes for many leases (``lease`` = ``*``) and beat within ``ALIVE_INTERVALS``
of its own heartbeat interval (the rule of ``release.lua``, so a handover planned to it is
one the script accepts). Namespace-wide keys of another type raise ``CorruptDataError``; one
unreadable lease hash is reported in ``corrupt`` and the rest are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_exceptions

from coordinator.connection.boundary import redis_errors, text
from coordinator.errors import CorruptDataError, InvalidArgumentError
from coordinator.leases.names import parse_lease_selector
from coordinator.leases.placement import Node
from coordinator.leases.registry import parse_version
from coordinator.protocol import keys
from coordinator.protocol.membership import ALIVE_INTERVALS, MANY_LEASES
from coordinator.protocol.records import parse_term

_LEASE_FIELDS = ("holder_id", "term", "lease_expires_at")
_CONTROLLER_FIELDS = ("status", "lease", "capacity", "selector", "last_heartbeat_at",
                      "heartbeat_interval_ms")


@dataclass(frozen=True)
class LeasesView:
    """One node's reading of a namespace's many leases (times are Redis ms)."""

    redis_now: int  # Redis ms
    version: int  # registry version (0 when never changed)
    leases: tuple[str, ...]  # registered, sorted (a member that is no lease name: in corrupt)
    holders: Mapping[str, str]  # lease -> holder node id, live lease hashes only
    terms: Mapping[str, int]  # lease -> term of the live lease
    expires_at: Mapping[str, int]  # lease -> Redis ms the live lease expires
    nodes: tuple[Node, ...]  # placement.Node of every live node competing for many leases (by id)
    preferred: Mapping[str, tuple[str, ...]]  # lease -> preferred holders (affinity), in order
    corrupt: Mapping[str, str]  # lease -> why its lease hash is unreadable (skip it)
    # (it is in ``leases``; a registry member that is no lease name is here and not there)
    # lease -> its own automation mode as stored (only leases that have one; a value that is
    # no mode is kept as read, for the node to report; a key of another type reads "?type")
    modes: Mapping[str, str] = field(default_factory=dict)
    # free lease -> the node a handover reserved it for, while the reservation stands: only
    # that node can take it meanwhile (acquire.lua), so it takes it whatever its plan says
    reserved: Mapping[str, str] = field(default_factory=dict)


async def read_view(redis: Any, namespace: str) -> LeasesView:
    """Read the namespace's registry, lease holders and competing nodes (two round trips)."""
    registry, version_key = keys.leases_key(namespace), keys.leases_version_key(namespace)
    affinity, heartbeats = keys.affinity_key(namespace), keys.heartbeats_key(namespace)
    with redis_errors(registry):
        pipe = redis.pipeline(transaction=False)
        pipe.time()
        pipe.zrange(registry, 0, -1)
        pipe.get(version_key)
        pipe.hgetall(affinity)
        pipe.zrange(heartbeats, 0, -1, withscores=True)
        replies = await pipe.execute(raise_on_error=False)
    for key, reply in zip((registry, version_key, affinity, heartbeats), replies[1:], strict=True):
        _refuse_error(key, reply)
    time_reply, members, version_text, affinity_map, scored = replies
    now = int(time_reply[0]) * 1000 + int(time_reply[1]) // 1000
    named = sorted(str(text(m)) for m in members)
    # a member that is no lease name was not added by leases_change.lua: reported, never placed
    corrupt = {m: "registered, but not a usable lease name" for m in named if not _usable(m)}
    leases = tuple(m for m in named if m not in corrupt)
    version = parse_version(version_key, version_text)
    heard = [(str(text(m)), int(score)) for m, score in scored]

    with redis_errors(registry):
        pipe = redis.pipeline(transaction=False)
        for lease in leases:
            pipe.hmget(keys.lease_key(namespace, lease), *_LEASE_FIELDS)
        for node_id, _ in heard:
            pipe.hmget(keys.controller_key(namespace, node_id), *_CONTROLLER_FIELDS)
        for lease in leases:
            pipe.get(keys.lease_mode_key(namespace, lease))
        replies = await pipe.execute(raise_on_error=False) if leases or heard else []
    mode_replies = replies[len(leases) + len(heard):]
    modes = {lease: "?type" if isinstance(reply, Exception) else str(text(reply))
             for lease, reply in zip(leases, mode_replies, strict=True) if reply is not None}

    holders: dict[str, str] = {}
    terms: dict[str, int] = {}
    expires_at: dict[str, int] = {}
    for lease, reply in zip(leases, replies[:len(leases)], strict=True):
        try:
            live = _live_lease(reply, now)
        except ValueError as e:
            corrupt[lease] = str(e)
            continue
        if live is not None:
            holders[lease], terms[lease], expires_at[lease] = live
    nodes = tuple(sorted((node for (node_id, score), reply in zip(
                              heard, replies[len(leases):len(leases) + len(heard)], strict=True)
                          if (node := _competing_node(node_id, score, reply, now)) is not None),
                         key=lambda n: n.node_id))
    reserved = await _reservations(redis, namespace, [
        lease for lease in leases if lease not in holders and lease not in corrupt], now)
    registered = set(leases)
    preferred = {lease: ids for lease, ids in _affinity(affinity_map).items() if lease in registered}
    return LeasesView(redis_now=now, version=version, leases=leases, holders=holders, terms=terms,
                      expires_at=expires_at, nodes=nodes, preferred=preferred, corrupt=corrupt,
                      modes=modes, reserved=reserved)


async def _reservations(redis: Any, namespace: str, free: list[str], now: int) -> dict[str, str]:
    """The standing handover reservations of the free leases: a third round trip, only in a
    round that finds a lease free (a handover, a crash, a new lease), never in a steady one."""
    if not free:
        return {}
    with redis_errors(keys.leases_key(namespace)):
        pipe = redis.pipeline(transaction=False)
        for lease in free:
            pipe.hmget(keys.tenure_key(namespace, lease), "reserved_for", "reserved_until")
        replies = await pipe.execute(raise_on_error=False)
    reserved: dict[str, str] = {}
    for lease, reply in zip(free, replies, strict=True):
        if isinstance(reply, Exception) or not reply or reply[0] is None:
            continue  # a tenure hash of another type: acquire.lua reports it to whoever tries
        until = text(reply[1])
        if until is not None and until.isdigit() and int(until) > now:
            reserved[lease] = str(text(reply[0]))
    return reserved


def _usable(name: str) -> bool:
    try:
        keys.check_name("lease name", name)
    except InvalidArgumentError:
        return False
    return True


def _refuse_error(key: str, reply: Any) -> None:
    """A pipelined command answered with an error: the key holds data we did not write."""
    if isinstance(reply, redis_exceptions.ResponseError):
        raise CorruptDataError(key, f"holds a value of a type the coordinator never writes ({reply})")
    if isinstance(reply, Exception):
        with redis_errors(key):
            raise reply


def _live_lease(reply: Any, now: int) -> tuple[str, int, int] | None:
    """(holder, term, expires) of a live lease hash; None when free; ValueError when unreadable."""
    if isinstance(reply, redis_exceptions.ResponseError):
        raise ValueError(f"holds a value of a type the coordinator never writes ({reply})")
    if isinstance(reply, Exception):
        raise reply
    holder, term, expires = (None if v is None else str(text(v)) for v in reply)
    if holder is None and term is None and expires is None:
        return None
    if not holder:
        raise ValueError("field 'holder_id' is missing")
    parsed_term = parse_term(term)
    if expires is None or not expires.isascii() or not expires.isdigit():
        raise ValueError(f"field 'lease_expires_at' is not a whole number: {expires!r}")
    if int(expires) <= now:
        return None  # lapsed (its key expires at this very moment): free to plan
    return holder, parsed_term, int(expires)


def _competing_node(node_id: str, score: int, reply: Any, now: int) -> Node | None:
    """The node its controller record describes, if it is alive and competes for many leases;
    a record that is unreadable or not a many-lease node's counts as no node."""
    if isinstance(reply, Exception):
        if isinstance(reply, redis_exceptions.ResponseError):
            return None
        raise reply
    status, lease, capacity, selector, last, interval = (
        None if v is None else str(text(v)) for v in reply)
    if status != "alive" or lease != MANY_LEASES:
        return None
    try:
        beat = int(last) if last is not None else score
        if now - beat >= ALIVE_INTERVALS * int(interval or 0):
            return None
        weight = int(capacity or "")
        if weight < 1:
            return None
        return Node(node_id, weight, parse_lease_selector(selector or ""))
    except (ValueError, InvalidArgumentError):
        return None


def _affinity(raw: Mapping[Any, Any]) -> dict[str, tuple[str, ...]]:
    """The affinity hash: lease -> its preferred node ids in order (empty items dropped)."""
    out: dict[str, tuple[str, ...]] = {}
    for name, value in raw.items():
        ids = tuple(dict.fromkeys(p.strip() for p in str(text(value)).split(",") if p.strip()))
        if ids:
            out[str(text(name))] = ids
    return out
