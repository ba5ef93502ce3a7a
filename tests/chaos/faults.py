"""The fault schedule: which faults, in which order, with which numbers, from a seed alone.

Every fault's numbers are drawn up front, the same count of draws whatever the cluster
looks like at run time, so one seed always gives the same schedule. Choices that depend on
the cluster (which standby) are drawn as a fraction and applied to the sorted candidates.
Kinds come in rounds: each round is a seeded shuffle of every kind, so even a short run
mixes them all.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from tests.chaos.recording import KINDS

# what each fault does, for the report
DESCRIPTIONS = {
    "kill_leader": "kill -9 of every process of the leader (daemon, guardian, watchdog, child: "
                   "a dead host)",
    "process_crash": "kill -9 of the leading daemon's pid only (its guardian, watchdog and "
                     "child live on: a process crash on a live host, released by the guardian)",
    "kill_standby": "kill -9 of a standby",
    "kill_all_but_one": "kill -9 of all daemons but one",
    "graceful_stop": "SIGTERM of the leader",
    "pause_leader": "SIGSTOP of the leader for TTL + 0.5-1.5 s, then SIGCONT",
    "partition_leader": "the leader's proxy blackholed for TTL + 0.5-2 s, then healed "
                        "(held bytes delivered late, or the connections cut)",
    "redis_restart": "Redis kill -9 or SIGTERM and restart, AOF on (appendfsync always)",
    "redis_outage": "Redis down for 3-4 TTLs, then restarted with its AOF",
    "slow_redis": "every proxy adds a round trip of 0.6-1.0 renew intervals for 2-3 TTLs",
    "clock_jump": "one daemon's wall clock jumps 30-3600 s forward or back for 1-2 TTLs, "
                  "then back to real time (libfaketime)",
    "redis_clock_step": "the Redis master's wall clock stepped 30-60 min forward or back for "
                        "1-2 TTLs, then back to real time (redis-server under libfaketime)",
    "lost_write_failover": "the replica's link cut, the leader SIGTERMed (the handover's grant "
                           "reaches the master only), 0.5-1.5 s of writes, then SENTINEL "
                           "FAILOVER promotes the replica: the last writes are lost",
    "redis_kill_everysec": "Redis kill -9 after 0.5-1.5 s with appendfsync everysec, restarted "
                           "from its AOF",
    "redis_restart_empty": "Redis kill -9 and restarted with no persistence: empty",
    "group_stop_leader": "SIGSTOP of the leader daemon's process group for 2 TTLs + 0.5-1.5 s "
                         "(its child left running), then SIGCONT",
    "freeze_leader_host": "SIGSTOP of everything on the leader's host (daemon, watchdog, child) "
                          "for 2 TTLs + 0.5-1.5 s, then SIGCONT (a paused VM)",
}


def draw(kind: str, rng: random.Random, ttl: float, renew: float) -> dict[str, Any]:
    """The numbers of one fault of ``kind``."""
    pick, x, y, z = rng.random(), rng.random(), rng.random(), rng.random()  # always four draws
    if kind == "pause_leader":
        return {"hold_s": round(ttl + 0.5 + x, 3)}
    if kind == "partition_leader":
        return {"hold_s": round(ttl + 0.5 + 1.5 * x, 3), "heal": "cut" if y < 0.5 else "deliver"}
    if kind == "redis_restart":
        return {"how": "kill" if x < 0.5 else "term"}
    if kind == "redis_outage":
        return {"down_s": round(ttl * (3 + x), 3)}
    if kind == "slow_redis":
        return {"one_way_s": round(renew * (0.6 + 0.4 * x) / 2, 3), "hold_s": round(ttl * (2 + y), 3)}
    if kind == "clock_jump":
        sign = 1 if x < 0.5 else -1
        return {"pick": pick, "leader": z < 0.7, "offset_s": sign * round(30 + 3570 * y),
                "hold_s": round(ttl * (1 + x), 3)}
    if kind in ("kill_standby", "kill_all_but_one"):
        return {"pick": pick}
    if kind == "redis_clock_step":  # so large that a stepped stamp is never a real one
        return {"offset_s": (1 if x < 0.5 else -1) * round(1800 + 1800 * y),
                "hold_s": round(ttl * (1 + z), 3)}
    if kind == "lost_write_failover":
        return {"lag_s": round(0.5 + x, 3)}
    if kind == "redis_kill_everysec":
        return {"run_s": round(0.5 + x, 3)}
    if kind in ("group_stop_leader", "freeze_leader_host"):
        return {"hold_s": round(2 * ttl + 0.5 + x, 3)}
    return {}


def plan(seed: int, *, ttl: float, renew: float, kinds: Sequence[str] = KINDS) -> Iterator[
        tuple[str, dict[str, Any], float]]:
    """Endless (kind, numbers, calm seconds before it) for ``seed``."""
    rng = random.Random(seed)
    while True:
        round_ = list(kinds)
        rng.shuffle(round_)
        for kind in round_:
            calm = round(0.2 + 0.8 * rng.random(), 3)
            yield kind, draw(kind, rng, ttl, renew), calm


def choose(candidates: Sequence[str], pick: float) -> str:
    """One of ``candidates`` (sorted first) by a drawn fraction in [0, 1)."""
    ordered = sorted(candidates)
    return ordered[min(len(ordered) - 1, int(pick * len(ordered)))]
