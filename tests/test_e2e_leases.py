"""Real ``coordinator run -- CMD`` processes holding many leases on a real redis-server: one
child per held lease with its lease and term in the environment; a node killed with -9 has
its leases (and children) re-homed within TTL + one renew interval; a stopped node hands
its leases over at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.processes import coordinator_env, spread, wait_for
from tests.redis_server import RedisServer, redis_server_binary, running_redis

pytestmark = pytest.mark.e2e
TTL, RENEW = 2.0, 0.25
LEASES = [f"s-{i}" for i in range(6)]

# the child: note "lease term pid" when it starts, then wait for its SIGTERM
CHILD = ("import os, signal, sys, time\n"
         "line = f\"{os.environ['COORDINATOR_NODE_ID']} {os.environ['COORDINATOR_LEASE']} "
         "{os.environ['COORDINATOR_TERM']} {os.getpid()}\\n\"\n"
         "with open(sys.argv[1], 'a') as f: f.write(line)\n"
         "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
         "while True: time.sleep(0.05)\n")


@pytest.fixture
def server() -> Iterator[RedisServer]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    with running_redis() as s:
        yield s


@contextlib.contextmanager
def nodes(server: RedisServer, names: list[str], workdir: Path) -> Iterator[dict[str, Any]]:
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in names:
            log = (workdir / f"{name}.log").open("wb")
            started[name] = subprocess.Popen(
                [sys.executable, "-m", "coordinator", "run", "--", sys.executable, "-c", CHILD,
                 str(workdir / "children.txt")],
                env=coordinator_env(server.url, COORDINATOR_NODE_ID=name,
                                    COORDINATOR_LEASES="s-{0..5}", COORDINATOR_LEASE_TTL=str(TTL),
                                    COORDINATOR_RENEW_INTERVAL=str(RENEW),
                                    COORDINATOR_HEARTBEAT_INTERVAL=str(RENEW)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        yield started
    finally:
        for process in started.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def holders(client: redis.Redis) -> dict[str, tuple[str, int]]:
    out = {}
    for lease in LEASES:
        holder, term = client.hmget(f"{{coordinator}}:lease:{lease}", "holder_id", "term")
        if holder is not None:
            out[lease] = (holder.decode(), int(term))
    return out


def children(workdir: Path) -> list[tuple[str, str, int, int]]:
    path = workdir / "children.txt"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        node, lease, term, pid = line.split()
        rows.append((node, lease, int(term), int(pid)))
    return rows


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose: its parent has not reaped it yet
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def running_children(workdir: Path) -> dict[str, tuple[str, int]]:
    """lease -> (node, term) of every child alive now; fails on two alive for one lease."""
    out: dict[str, tuple[str, int]] = {}
    for node, lease, term, pid in children(workdir):
        if alive(pid):
            assert lease not in out, f"two children of {lease} alive: {out[lease]}, {(node, term)}"
            out[lease] = (node, term)
    return out


def test_one_child_per_held_lease_rehomed_after_a_kill(server: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis(port=server.port)
    with nodes(server, ["a", "b"], tmp_path) as started:
        # every lease held, spread 3 / 3, each by a node running that lease's child, whose
        # environment names its lease and its term
        wait_for(lambda: spread(holders(client)) == [3, 3]
                 and running_children(tmp_path) == holders(client), 15)
        held = holders(client)
        of_b = {lease for lease, (node, _) in held.items() if node == "b"}
        started["b"].send_signal(signal.SIGKILL)  # the daemon only: its watchdogs see it die
        killed = time.monotonic()
        wait_for(lambda: all(holders(client).get(lease, ("",))[0] == "a" for lease in of_b),
                 TTL + 4 * RENEW)
        took = time.monotonic() - killed
        assert took <= TTL + 2 * RENEW, took
        wait_for(lambda: {n for n, _ in running_children(tmp_path).values()} == {"a"}
                 and len(running_children(tmp_path)) == 6, 5)
        assert running_children(tmp_path) == holders(client)
        started["a"].send_signal(signal.SIGTERM)
        assert started["a"].wait(timeout=10) == 0
        assert holders(client) == {}  # released on the way out: nobody waits a TTL
        assert running_children(tmp_path) == {}


def test_a_stopped_node_hands_over_in_milliseconds(server: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis(port=server.port)
    with nodes(server, ["a", "b"], tmp_path) as started:
        wait_for(lambda: spread(holders(client)) == [3, 3], 15)
        before = holders(client)
        of_b = {lease for lease, (node, _) in before.items() if node == "b"}
        started["b"].send_signal(signal.SIGTERM)
        assert started["b"].wait(timeout=10) == 0
        # b's leases were handed over on its way out: a holds them (new terms) at once
        after = wait_for(lambda: len(h := holders(client)) == 6 and h, 1.0)
        assert all(after[lease][0] == "a" and after[lease][1] > before[lease][1] for lease in of_b)


def test_pause_and_resume_one_lease_from_the_command_line(server: RedisServer) -> None:
    from tests.processes import coordinator

    done = coordinator("pause", "--lease", "s-1", redis_url=server.url)
    assert (done.returncode, done.stdout) == (0, "lease s-1: automation mode: running -> paused\n")
    client = redis.Redis(port=server.port)
    assert client.get("{coordinator}:automation_mode:s-1") == b"paused"
    assert client.get("{coordinator}:automation_mode") is None  # the namespace's is untouched
    events = coordinator("events", redis_url=server.url)
    assert "lease s-1: automation mode changed from running to paused" in events.stdout
    done = coordinator("resume", "--lease", "s-1", redis_url=server.url)
    assert done.stdout == "lease s-1: automation mode: paused -> running\n"
    bad = coordinator("pause", "--lease", "no such", redis_url=server.url)
    assert bad.returncode == 2 and "--lease" in bad.stderr
