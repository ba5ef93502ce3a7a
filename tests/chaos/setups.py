"""The named configurations a full chaos run goes through, one report section each."""

from __future__ import annotations

from dataclasses import dataclass

from tests.chaos.recording import FROZEN, KINDS


@dataclass(frozen=True)
class Setup:
    """A topology, the replica-ack setting and the fault kinds injected in it."""

    name: str
    topology: str  # "single" | "sentinel"
    min_replicas_ack: int
    kinds: tuple[str, ...]
    title: str


_REDIS_SIDE = ("lost_write_failover", "redis_clock_step", "redis_kill_everysec",
               "redis_restart_empty")
SETUPS = {s.name: s for s in (
    Setup("single", "single", 0, (*KINDS, "redis_kill_everysec", "redis_restart_empty", *FROZEN),
          "one redis-server, no replica (`COORDINATOR_MIN_REPLICAS_ACK=0`)"),
    Setup("redis-clock", "single", 0, ("redis_clock_step",),
          "one redis-server under libfaketime, no replica (`COORDINATOR_MIN_REPLICAS_ACK=0`)"),
    Setup("sentinel", "sentinel", 0, _REDIS_SIDE + FROZEN,
          "master + replica + Sentinel, `COORDINATOR_MIN_REPLICAS_ACK=0`"),
    Setup("sentinel-ack", "sentinel", 1, _REDIS_SIDE + FROZEN,
          "master + replica + Sentinel, `COORDINATOR_MIN_REPLICAS_ACK=1`"),
)}


def setup_of(topology: str, min_replicas_ack: int, redis_faketime: bool) -> Setup | None:
    """The named setup a recording's settings came from (None: a custom one)."""
    for s in SETUPS.values():
        if (s.topology, s.min_replicas_ack) == (topology, min_replicas_ack) and (
                s.topology != "single" or (s.name == "redis-clock") == redis_faketime):
            return s
    return None
