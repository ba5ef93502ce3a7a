"""Attacks on issue 15's promise (many leases), with real ``coordinator run`` processes on a
real redis-server.

Each test is a reproduction that failed on the code it was written against (branch main at
4e72ab4); its docstring says what was promised and what happened. The children log their
start with ``time.time()``, lease and term, and a tick every 20 ms, so a child's lifetime can
be read back; the lease keys are polled every 10 ms to see how long a lease was free."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.processes import coordinator_env, spread, wait_for
from tests.redis_server import RedisServer, redis_server_binary, running_redis

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    redis_server_binary() is None, reason="no redis-server binary (apt-get install redis-server)")]

NS = "coordinator"

# a child that notes its start (node, lease, term, pid, wall time), then ticks until SIGTERM
CHILD = ("import json, os, signal, sys, time\n"
         "info = {k: os.environ.get('COORDINATOR_' + k.upper()) for k in ('node_id', 'lease', 'term')}\n"
         "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
         "def note(ev): os.write(fd, (json.dumps(dict(info, pid=os.getpid(), ev=ev, t=time.time()))"
         " + '\\n').encode())\n"
         "note('start')\n"
         "signal.signal(signal.SIGTERM, lambda *_: (note('stop'), os._exit(0)))\n"
         "while True:\n    note('tick'); time.sleep(0.02)\n")


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with running_redis("--save", "") as s:
        yield s


class Node:
    """One ``coordinator run`` (with ``-- CMD`` when ``child``), its log in JSON lines."""

    def __init__(self, server: RedisServer, name: str, workdir: Path, *, child: bool, **env: str) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.{time.monotonic_ns()}.log"
        args = [sys.executable, "-m", "coordinator", "run"]
        if child:
            args += ["--", sys.executable, "-c", CHILD, str(workdir / "children.jsonl")]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                args, env=coordinator_env(server.url, COORDINATOR_NODE_ID=name, **env),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def kill_all(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@contextlib.contextmanager
def started(server: RedisServer, names: str, workdir: Path, *, child: bool, **env: str) -> Iterator[list[Node]]:
    nodes: list[Node] = []
    try:
        nodes.extend(Node(server, name, workdir, child=child, **env) for name in names)
        yield nodes
    finally:
        for node in nodes:
            node.kill_all()


def at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


def holders(client: redis.Redis, leases: list[str], ns: str = NS) -> dict[str, str]:
    pipe = client.pipeline()
    for lease in leases:
        pipe.hget(f"{{{ns}}}:lease:{lease}", "holder_id")
    return {lease: h.decode() for lease, h in zip(leases, pipe.execute(), strict=True) if h is not None}


def longest_free(client: redis.Redis, leases: list[str], seconds: float, ns: str = NS, *,
                 held_before: bool = False) -> dict[str, float]:
    """Poll every 10 ms for ``seconds``: per lease, the longest time it had no holder after it
    first had one, or from the start with ``held_before`` (a lease still free at the end
    counts up to the end)."""
    seen: set[str] = set(leases) if held_before else set()
    free_since: dict[str, float] = {}
    worst: dict[str, float] = {}
    end = time.time() + seconds
    while (now := time.time()) < end:
        held = holders(client, leases, ns)
        for lease in leases:
            if lease in held:
                seen.add(lease)
                if lease in free_since:
                    worst[lease] = max(worst.get(lease, 0.0), now - free_since.pop(lease))
            elif lease in seen:
                free_since.setdefault(lease, now)
        time.sleep(0.01)
    for lease, since in free_since.items():
        worst[lease] = max(worst.get(lease, 0.0), time.time() - since)
    return worst


def test_a_lease_reserved_for_a_node_that_missed_the_event_is_not_stranded_for_a_ttl(
        server: RedisServer, tmp_path: Path) -> None:
    """Promised: a move is the reserved handover (milliseconds, no gap); a change is acted on
    within one renew interval (a node that hears no event acts at its next round); a joining
    node causes its share of moves; every registered lease has a live holder (nothing
    stranded).

    Happened: a handover's target takes the lease only when it hears `lease_released` with
    `handoff_to` (node_events.py); the plan knows nothing of reservations. A target that
    missed that event (its pub/sub connection dropped, here by `CLIENT KILL TYPE pubsub`, while
    it stalled for 4 s, well inside its liveness window and the TTL) plans at its next round
    on a view in which a node has joined meanwhile: its plan gives part of what was reserved
    for it to the newcomer, it takes only its own part, and the newcomer is refused by the
    reservation (`acquire.lua` answers "held" while the target is alive) for its whole TTL.
    Scratch run (9 leases, TTL 9, renew 3, heartbeat 3): `a leases.hand_over s-8 to b` /
    `lease.handed_over reserved_for b` at 02:50:01.277, b never took it, `d lease.acquired
    s-8` at 02:50:10.867; s-8 free 9.56 s, 11.91 s, 11.76 s in three of three runs (one more
    lease still free after 10.95 s). This test (24 leases: a hands 12 to b, then 8 each): s-5,
    s-9, s-20 and s-22 free 8.5 s after b resumed, in four of four runs (2 of 3 before d was
    given 0.5 s to be in every view). The same strands leases without any fault when nodes
    start together: `LeaseNode.start` heartbeats and runs its first round before it
    subscribes (with `run -- CMD` about a second of watchdog spawns), so handovers planned onto
    a starting node are missed; four `run -- CMD` nodes started together left leases free
    9.0, 9.01, 9.18, 9.23 s (in 4 of 11 start-ups)."""
    leases = [f"s-{i}" for i in range(24)]
    client = redis.Redis(port=server.port)
    deaf = threading.Event()

    def drop_pubsub_connections() -> None:  # every node misses every event from now on
        killer = redis.Redis(port=server.port)
        while not deaf.is_set():
            with contextlib.suppress(redis.RedisError):
                killer.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            time.sleep(0.02)

    env = {"COORDINATOR_LEASES": "s-{0..23}", "COORDINATOR_LEASE_TTL": "9",
           "COORDINATOR_RENEW_INTERVAL": "3", "COORDINATOR_HEARTBEAT_INTERVAL": "3"}
    killer = threading.Thread(target=drop_pubsub_connections, daemon=True)
    with started(server, "a", tmp_path, child=False, **env) as nodes:
        try:
            wait_for(lambda: len(holders(client, leases)) == 24, 20, "a holds all")
            killer.start()
            b = Node(server, "b", tmp_path, child=False, **env)
            nodes.append(b)
            wait_for(lambda: any(e["event"] == "daemon.started" for e in b.logs()), 20, "b started")
            b.process.send_signal(signal.SIGSTOP)  # a stall, shorter than its liveness (9 s)
            stalled = time.monotonic()
            wait_for(lambda: len(holders(client, leases)) < 24, 5, "a hands leases to b")
            d = Node(server, "d", tmp_path, child=False, **env)
            nodes.append(d)
            wait_for(lambda: any(e["event"] == "daemon.started" for e in d.logs()), 20, "d started")
            time.sleep(0.5)  # d is in every view now
            assert time.monotonic() - stalled < 8  # b stayed alive in every view (9 s)
            b.process.send_signal(signal.SIGCONT)
            worst = longest_free(client, leases, 11, held_before=True)
        finally:
            deaf.set()
        stranded = {lease: round(s, 2) for lease, s in worst.items() if s > 3 + 1}
        assert not stranded, f"leases free for longer than a round (3 s) + 1 s, all nodes alive: {stranded}"


def test_a_stopped_run_cmd_node_hands_its_leases_over_in_milliseconds(server: RedisServer,
                                                                       tmp_path: Path) -> None:
    """Promised: a node stopped with SIGTERM hands its leases over in milliseconds, no gap.

    Happened: with `run -- CMD` the target acquires a handed-over lease only after it has
    started that lease's watchdog (a new Python process), so the lease is free meanwhile:
    `a lease.handed_over s-5 reserved_for b` at 03:13.495, `b watchdog.started` 03:13.871,
    `b lease.acquired s-5` 03:13.883 (0.388 s); s-7 to d 0.521 s. Measured 0.22-0.52 s per
    handed-over lease (4 nodes, 9 leases, TTL 3 and 9 alike), 0.44-0.65 s when two nodes stop
    together. Side by side on this machine: the single-lease `run -- CMD` hands over in 2-6 ms
    (release to acquire), many leases without CMD in 1-38 ms."""
    leases = [f"s-{i}" for i in range(4)]
    client = redis.Redis(port=server.port)
    with started(server, "ab", tmp_path, child=True, COORDINATOR_LEASES="s-{0..3}",
                 COORDINATOR_LEASE_TTL="9", COORDINATOR_RENEW_INTERVAL="3",
                 COORDINATOR_HEARTBEAT_INTERVAL="0.5") as (a, b):
        wait_for(lambda: spread(holders(client, leases)) == [2, 2], 20, "spread 2 / 2")
        time.sleep(1.0)
        stopped = time.time()
        b.process.send_signal(signal.SIGTERM)
        assert b.process.wait(timeout=10) == 0
        wait_for(lambda: holders(client, leases) == dict.fromkeys(leases, "a"), 10, "all on a")
        handed = {e["lease"]: at(e) for e in b.logs() if e["event"] == "lease.handed_over"
                  and e.get("reserved_for") == "a" and at(e) >= stopped}
        acquired = {e["lease"]: at(e) for e in a.logs() if e["event"] == "lease.acquired"}
        assert len(handed) == 2, handed
        delays = {lease: round(acquired[lease] - released, 3) for lease, released in handed.items()}
        assert max(delays.values()) < 0.1, f"handed over -> acquired (s): {delays}"


def test_leases_come_back_after_redis_restarted_empty(server: RedisServer, tmp_path: Path) -> None:
    """Promised: Redis going away is a state (degraded), not a crash; a daemon started with
    COORDINATOR_LEASES registers those leases and places them (the single-lease daemon holds
    its lease again once an empty Redis is back).

    Happened: the registry (`{ns}:leases`) is written only at start. Two daemons with
    COORDINATOR_LEASES=s-{0..3}; Redis stopped for 3 s and started again empty: 8 s later
    (and for as long as we looked) no lease was held and `{ns}:leases` was empty; both
    daemons were alive and renewing nothing. Every lease stays down until a daemon restarts."""
    leases = [f"s-{i}" for i in range(4)]
    client = redis.Redis(port=server.port)
    with started(server, "ab", tmp_path, child=False, COORDINATOR_LEASES="s-{0..3}",
                 COORDINATOR_LEASE_TTL="2", COORDINATOR_RENEW_INTERVAL="0.25",
                 COORDINATOR_HEARTBEAT_INTERVAL="0.25") as nodes:
        wait_for(lambda: spread(holders(client, leases)) == [2, 2], 20, "spread 2 / 2")
        server.stop()  # --save "": it comes back empty
        time.sleep(3)
        server.start_again()  # (the daemons write again at once: dbsize is no witness)
        wait_for(lambda: len(holders(client, leases)) == 4, 5,
                 f"every lease held again after Redis came back empty (registry: "
                 f"{client.zrange(f'{{{NS}}}:leases', 0, -1)}, holders: {holders(client, leases)})")
        assert all(node.process.poll() is None for node in nodes)
        # it came back because a daemon saw the registry older than what it had registered
        assert any(e["event"] == "leases.registry_lost" for node in nodes for e in node.logs())


def test_a_crashed_node_with_many_leases_is_rehomed_within_ttl_and_a_round(server: RedisServer,
                                                                            tmp_path: Path) -> None:
    """Promised: a node killed with -9 has its leases picked up within TTL + one renew
    interval, for up to 4,096 registered leases; Redis work per lease is a small marginal cost.

    Happened: two daemons, 300 leases, TTL 2 s, renew 0.5 s, no guardian. Re-homing the killed
    node's 150 leases took 3.5 s (bound 2.5 s), and the survivor logged 403
    `lease.failed` "Redis unavailable: MaxConnectionsError: Too many connections" and 168
    "Redis did not answer in time", plus a `leases.renew_failed` (the one call that renews
    the leases it already held failed: its own leases were put at risk by the pickup). It
    exhausts its own connection pool by acquiring every lease at once; the same at start
    (3 nodes, 500 leases: thousands of those lines, 21 s to settle; 3 nodes, 64 leases, TTL 0.9 s:
    63 "did not answer in time" and 23 `events.publish_failed` MaxConnectionsError as the first
    node took all 64). 100 leases on two nodes: clean, re-homed in 1.87 s.

    Why (read afterwards): `LeaseNode._act` gathers one acquire per planned lease at once (each
    a `LeaseMember.lease_step`, plus its `lease_acquired` publish) on the one client, whose
    redis-py pool holds at most 100 connections (`from_url`'s default); past that every call
    fails at once with MaxConnectionsError, and the node's own `renew_many` queues behind
    them."""
    leases = [f"s-{i}" for i in range(300)]
    client = redis.Redis(port=server.port)
    with started(server, "ab", tmp_path, child=False, COORDINATOR_LEASES="s-{0..299}",
                 COORDINATOR_LEASE_TTL="2", COORDINATOR_RENEW_INTERVAL="0.5",
                 COORDINATOR_HEARTBEAT_INTERVAL="0.5", COORDINATOR_GUARDIAN="false") as (a, b):
        wait_for(lambda: spread(holders(client, leases)) == [150, 150], 30, "spread 150 / 150")
        time.sleep(1.0)
        started_at = len(b.logs())
        a.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: holders(client, leases) == dict.fromkeys(leases, "b"), 10, "all on b")
        took = time.monotonic() - killed
        failures = [e for e in b.logs()[started_at:] if e["event"] in ("lease.failed", "leases.renew_failed")]
        assert not failures, f"{len(failures)} failures while re-homing, first: {failures[0]}"
        assert took <= 2.0 + 0.5 + 0.2, took
