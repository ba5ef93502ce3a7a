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
    leases: str = ""  # COORDINATOR_LEASES: many leases per daemon (issue 15); "" = the single lease


# many leases: every daemon holds some, so each fault on "the leader" (the node holding the
# most) or on a standby moves leases. Left out: process_crash (a node of many leases has no
# guardian: it is kill_leader again) and the frozen kinds (they freeze a leader-only child,
# and this setup runs none: 32 children and their watchdogs are 64 more processes)
_LEASES = ("kill_leader", "kill_standby", "kill_all_but_one", "graceful_stop", "pause_leader",
           "partition_leader", "redis_restart", "redis_outage", "slow_redis", "clock_jump",
           "redis_kill_everysec", "redis_restart_empty")
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
    Setup("leases", "single", 0, _LEASES,
          "many leases: every daemon with `COORDINATOR_LEASES=shard-{0..31}` and the fence "
          "probe (one fenced write per held lease per renew interval), one redis-server, no "
          "replica", leases="shard-{0..31}"),
)}


def setup_of(topology: str, min_replicas_ack: int, redis_faketime: bool,
             leases: bool = False) -> Setup | None:
    """The named setup a recording's settings came from (None: a custom one)."""
    for s in SETUPS.values():
        if bool(s.leases) != leases:
            continue
        if (s.topology, s.min_replicas_ack) == (topology, min_replicas_ack) and (
                s.topology != "single" or (s.name == "redis-clock") == redis_faketime):
            return s
    return None
