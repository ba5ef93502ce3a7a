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
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.processes import coordinator_env
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


def spread(held: dict[str, str]) -> list[int]:
    per: dict[str, int] = {}
    for node in held.values():
        per[node] = per.get(node, 0) + 1
    return sorted(per.values())


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"{what}: not within {timeout} s")


def longest_free(client: redis.Redis, leases: list[str], seconds: float, ns: str = NS) -> dict[str, float]:
    """Poll every 10 ms for ``seconds``: per lease, the longest time it had no holder after it
    first had one (a lease still free at the end counts up to the end)."""
    seen: set[str] = set()
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


def test_leases_handed_over_while_nodes_start_are_not_stranded_for_a_ttl(server: RedisServer,
                                                                         tmp_path: Path) -> None:
    """Promised: a move is the reserved handover (milliseconds, no gap); a joining node causes
    its share of moves; every registered lease has a live holder (nothing stranded).

    Happened: four `run -- CMD` nodes started together (9 leases, TTL 9 s, renew 3 s). A node
    that held more than its share handed leases over, reserved for a node that was still
    starting (spawning the watchdogs of the leases in its first plan); that node never
    acquired them (its own plan did not give them to it), while the node the plan did give
    them to was refused by the reservation. The lease stayed free for the whole reservation:
    `c leases.hand_over s-8 to b`, `lease.handed_over reserved_for b` at 05:17.128, b acquired
    s-4 and s-6 but never s-8, d acquired s-8 at 05:26.124 (8.996 s later); two such leases
    in every one of three runs (worst free time 9.0 s and 9.01 s); as this test, 3 of 4 single runs
    failed (s-8 free 1.0 s, 3.05 s; s-5 9.18 s). With TTL 6 / renew 2, leases
    reserved for a node were acquired by it only 1.5-2.5 s later (a round), in 2 of 3 runs.

    Why (read afterwards): `LeaseNode.start` heartbeats and runs its first round (with CMD
    about a second of watchdog spawns) before it subscribes to the events channel, and a
    handover's target takes the lease only on hearing `lease_released` with `handoff_to`; the
    plan knows nothing of reservations. A target that misses the event takes the lease at its
    next round if its plan gives it the lease, and never if its plan names another node, which
    `acquire.lua` refuses for the reservation's whole TTL."""
    leases = [f"s-{i}" for i in range(9)]
    client = redis.Redis(port=server.port)
    # a race of the start: it struck in 3 of 4 single runs, so two runs (a namespace each)
    for attempt in ("first", "second"):
        workdir = tmp_path / attempt
        workdir.mkdir()
        with started(server, "abcd", workdir, child=True, COORDINATOR_NAMESPACE=attempt,
                     COORDINATOR_LEASES="s-{0..8}", COORDINATOR_LEASE_TTL="9",
                     COORDINATOR_RENEW_INTERVAL="3", COORDINATOR_HEARTBEAT_INTERVAL="0.5"):
            worst = longest_free(client, leases, 16, ns=attempt)
            stranded = {lease: round(s, 2) for lease, s in worst.items() if s > 1.0}
            assert not stranded, f"{attempt} run: leases free for over 1 s, all nodes alive: {stranded}"
            assert spread(holders(client, leases, attempt)) == [2, 2, 2, 3]


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
        b.process.send_signal(signal.SIGTERM)
        assert b.process.wait(timeout=10) == 0
        wait_for(lambda: holders(client, leases) == dict.fromkeys(leases, "a"), 10, "all on a")
        handed = {e["lease"]: at(e) for e in b.logs()
                  if e["event"] == "lease.handed_over" and e.get("reserved_for") == "a"}
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
    (3 nodes, 500 leases: thousands of those lines, 21 s to settle). 100 leases: clean, 1.87 s."""
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
