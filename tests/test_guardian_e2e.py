"""The guardian beside real daemons: a kill -9 of the leading daemon's pid fails over in
milliseconds (the guardian releases), a frozen daemon is never released, a dead node
(every process killed) takes the TTL, and the guardian's credentials show nowhere.

Failover times are read on Redis's clock: the stamps of the history stream's events and
``TIME`` just before the fault."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from coordinator.protocol import keys
from tests.redis_server import RedisServer
from tests.test_child import _first_line, _lines
from tests.test_child_lifecycle import START_WAIT, TTL, Nodes, _state, _writer

# generous for a loaded machine, and still far below the TTL that today's failover takes
PROCESS_CRASH_BOUND_MS = 1000
# a few in the suite; the measurement (20 and more, the p99) is `coordinator bench`, or this
# test with GUARDIAN_TRIALS=20 for one with a leader-only child
TRIALS = int(os.environ.get("GUARDIAN_TRIALS", "3"))


@pytest.fixture
def nodes(tmp_path: Path, redis_server: RedisServer) -> Iterator[Nodes]:
    made = Nodes(tmp_path, redis_server)
    try:
        yield made
    finally:
        made.cleanup()


def _redis_ms(client: redis_sync.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _history(client: redis_sync.Redis, namespace: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"event"]) for _, fields in
            client.xrange(keys.history_key(namespace))]


def _wait_event(client: redis_sync.Redis, namespace: str, kind: str, after_ms: int,
                timeout: float = START_WAIT, **match: Any) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for event in _history(client, namespace):
            if event.get("type") == kind and event.get("at", 0) >= after_ms and all(
                    event.get(k) == v for k, v in match.items()):
                return event
        time.sleep(0.01)
    raise AssertionError(f"no {kind} {match} after {after_ms}")


def _leader(client: redis_sync.Redis, namespace: str) -> str | None:
    holder = client.hget(keys.lease_key(namespace, "global"), "holder_id")
    return holder.decode() if holder else None


def _wait_leader(client: redis_sync.Redis, namespace: str) -> str:
    end = time.monotonic() + START_WAIT
    while time.monotonic() < end:
        leader = _leader(client, namespace)
        if leader is not None:
            return leader
        time.sleep(0.02)
    raise AssertionError("nobody leads")


def _started(nodes: Nodes, node: str, name: str) -> dict[str, Any]:
    return nodes.wait_for(node, name)[-1]


@pytest.mark.e2e
def test_a_kill_9_of_the_leading_daemon_fails_over_in_milliseconds(
    nodes: Nodes, tmp_path: Path
) -> None:
    client = redis_sync.Redis.from_url(nodes.server.url)
    script, out = _writer(tmp_path)
    for node in ("a", "b"):
        nodes.spawn(node, [sys.executable, script, str(out)])
        _started(nodes, node, "guardian.started")
    figures = []
    for _ in range(TRIALS):
        leader = _wait_leader(client, nodes.namespace)
        other = "b" if leader == "a" else "a"
        _first_line(out, after=time.time(), not_node=other, timeout=START_WAIT)
        time.sleep(0.3)
        before = _redis_ms(client)
        killed_at = time.time()
        nodes.procs[leader].send_signal(signal.SIGKILL)  # the daemon's pid only
        changed = _wait_event(client, nodes.namespace, "leader_changed", before,
                              holder_id=other)
        released = _wait_event(client, nodes.namespace, "lease_released", before,
                               holder_id=leader)
        assert released["at"] <= changed["at"]
        figures.append(changed["at"] - before)
        nxt = _first_line(out, after=killed_at, not_node=leader, timeout=START_WAIT)
        old_lines = [t for n, _, _, t in _lines(out) if n == leader]
        assert max(old_lines) < nxt[3], "the old child wrote after the new one started"
        nodes.procs[leader].wait(timeout=10)
        # the killed node comes back as a standby, for the next trial
        count = len(nodes.events(leader, "guardian.started"))
        nodes.spawn(leader, [sys.executable, script, str(out)])
        nodes.wait_for(leader, "guardian.started", count=count + 1)
        nodes.wait_for(leader, "daemon.started", count=count + 1)
    ordered = sorted(figures)
    print(f"process crash with a child: new leader {figures} ms after the kill (Redis clock);"
          f" p50 {ordered[(len(ordered) - 1) // 2]} ms, max {ordered[-1]} ms, n={len(ordered)}")
    assert max(figures) < PROCESS_CRASH_BOUND_MS


@pytest.mark.e2e
def test_a_sigstopped_daemon_is_not_released_by_its_guardian(nodes: Nodes, tmp_path: Path) -> None:
    client = redis_sync.Redis.from_url(nodes.server.url)
    script, out = _writer(tmp_path)
    nodes.spawn("a", [sys.executable, script, str(out)])
    assert _first_line(out, after=0, timeout=START_WAIT)[0] == "a"
    nodes.spawn("b", [sys.executable, script, str(out)])
    guardian = _started(nodes, "a", "guardian.started")
    _started(nodes, "b", "guardian.started")
    time.sleep(0.3)
    before = _redis_ms(client)
    os.kill(nodes.procs["a"].pid, signal.SIGSTOP)  # the daemon alone: the guardian lives on
    changed = _wait_event(client, nodes.namespace, "leader_changed", before, holder_id="b")
    assert changed["at"] - before >= (TTL - 0.6) * 1000, "taken before the lease expired"
    assert not [e for e in _history(client, nodes.namespace)
                if e["type"] == "lease_released" and e["at"] >= before]
    assert _state(guardian["pid"]) not in ("gone", "Z", "T")
    os.kill(nodes.procs["a"].pid, signal.SIGCONT)
    end = time.monotonic() + START_WAIT
    while time.monotonic() < end and not [
            e for e in nodes.events("a", "state.changed") if e.get("to") != "leader"]:
        time.sleep(0.05)
    assert [e for e in nodes.events("a", "state.changed") if e.get("to") != "leader"]
    assert _leader(client, nodes.namespace) == "b"


@pytest.mark.e2e
def test_a_dead_node_takes_the_ttl(nodes: Nodes, tmp_path: Path) -> None:
    client = redis_sync.Redis.from_url(nodes.server.url)
    script, out = _writer(tmp_path)
    nodes.spawn("a", [sys.executable, script, str(out)])
    assert _first_line(out, after=0, timeout=START_WAIT)[0] == "a"
    nodes.spawn("b", [sys.executable, script, str(out)])
    guardian = _started(nodes, "a", "guardian.started")
    watchdog = _started(nodes, "a", "watchdog.started")
    _started(nodes, "b", "guardian.started")
    time.sleep(0.3)
    child = int(_lines(out)[-1][2])
    before = _redis_ms(client)
    # every process of the node, the guardian first: a host that dies takes them all at once
    for pid in (guardian["pid"], watchdog["pid"], child, nodes.procs["a"].pid):
        os.kill(pid, signal.SIGKILL)
    changed = _wait_event(client, nodes.namespace, "leader_changed", before, holder_id="b")
    assert changed["at"] - before >= (TTL - 0.6) * 1000
    assert not [e for e in _history(client, nodes.namespace)
                if e["type"] == "lease_released" and e["at"] >= before]


@pytest.mark.e2e
def test_the_guardians_credentials_are_not_in_ps_nor_in_the_childs_environment(
    nodes: Nodes, tmp_path: Path
) -> None:
    client = redis_sync.Redis.from_url(nodes.server.url)
    dump = tmp_path / "env.json"
    script = tmp_path / "dump.py"
    script.write_text("import json, os, sys, time\n"
                      "json.dump(dict(os.environ), open(sys.argv[1] + '.tmp', 'w'))\n"
                      "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\ntime.sleep(300)\n")
    # the server's default user has no password, so it takes any: the guardian's AUTH works
    password = "leak-url-" + uuid.uuid4().hex[:8]
    url = f"redis://default:{password}@127.0.0.1:{nodes.server.port}/0"
    nodes.spawn("a", [sys.executable, str(script), str(dump)], COORDINATOR_REDIS_URL=url)
    guardian = _started(nodes, "a", "guardian.started")
    end = time.monotonic() + START_WAIT
    while not dump.exists() and time.monotonic() < end:
        time.sleep(0.05)
    ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True,
                        check=True).stdout
    assert str(guardian["pid"]) in ps
    assert password not in ps
    assert password not in dump.read_text()
    assert password not in Path(f"/proc/{guardian['pid']}/environ").read_bytes().decode()
    assert password not in Path(f"/proc/{guardian['pid']}/cmdline").read_bytes().decode()
    # and the guardian did get them: it releases with them
    before = _redis_ms(client)
    nodes.procs["a"].send_signal(signal.SIGKILL)
    released = _wait_event(client, nodes.namespace, "lease_released", before, holder_id="a")
    assert released["at"] - before < PROCESS_CRASH_BOUND_MS


@pytest.mark.e2e
def test_a_guardian_that_dies_is_replaced_and_the_new_one_releases(
    nodes: Nodes, tmp_path: Path
) -> None:
    client = redis_sync.Redis.from_url(nodes.server.url)
    script, out = _writer(tmp_path)
    nodes.spawn("a", [sys.executable, script, str(out)])
    assert _first_line(out, after=0, timeout=START_WAIT)[0] == "a"
    nodes.spawn("b", [sys.executable, script, str(out)])
    first = _started(nodes, "a", "guardian.started")
    _started(nodes, "b", "guardian.started")
    os.kill(first["pid"], signal.SIGKILL)
    nodes.wait_for("a", "guardian.lost")
    (_, second) = nodes.wait_for("a", "guardian.started", count=2)
    assert second["pid"] != first["pid"]
    assert _leader(client, nodes.namespace) == "a"  # a lost guardian costs no leadership
    time.sleep(0.3)
    before = _redis_ms(client)
    nodes.procs["a"].send_signal(signal.SIGKILL)
    changed = _wait_event(client, nodes.namespace, "leader_changed", before, holder_id="b")
    assert changed["at"] - before < PROCESS_CRASH_BOUND_MS


@pytest.mark.e2e
def test_with_the_guardian_off_a_kill_9_takes_the_ttl(nodes: Nodes, tmp_path: Path) -> None:
    client = redis_sync.Redis.from_url(nodes.server.url)
    script, out = _writer(tmp_path)
    nodes.spawn("a", [sys.executable, script, str(out)], COORDINATOR_GUARDIAN="false")
    assert _first_line(out, after=0, timeout=START_WAIT)[0] == "a"
    nodes.spawn("b", [sys.executable, script, str(out)], COORDINATOR_GUARDIAN="false")
    nodes.wait_for("b", "daemon.started")
    time.sleep(0.3)
    before = _redis_ms(client)
    nodes.procs["a"].send_signal(signal.SIGKILL)
    changed = _wait_event(client, nodes.namespace, "leader_changed", before, holder_id="b")
    assert changed["at"] - before >= (TTL - 0.6) * 1000
    assert not nodes.events("a", "guardian.started")


@pytest.mark.e2e
def test_after_a_graceful_stop_the_guardian_releases_nothing(nodes: Nodes, tmp_path: Path) -> None:
    client = redis_sync.Redis.from_url(nodes.server.url)
    script, out = _writer(tmp_path)
    nodes.spawn("a", [sys.executable, script, str(out)])
    assert _first_line(out, after=0, timeout=START_WAIT)[0] == "a"
    _started(nodes, "a", "guardian.started")
    before = _redis_ms(client)
    nodes.procs["a"].send_signal(signal.SIGTERM)
    assert nodes.procs["a"].wait(timeout=15) == 0
    nodes.wait_for("a", "guardian.exiting")  # told the tenure ended before the daemon's end closed
    released = [e for e in _history(client, nodes.namespace)
                if e["type"] == "lease_released" and e["at"] >= before]
    assert len(released) == 1 and released[0]["holder_id"] == "a"  # the daemon's own
    assert not nodes.events("a", "guardian.released")


IGNORES_SIGTERM = r'''
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(1)
'''


@pytest.mark.e2e
def test_a_kill_9_during_a_graceful_stop_is_released_by_the_guardian(
        nodes: Nodes, tmp_path: Path) -> None:
    """A supervisor's stop timeout: SIGTERM, then kill -9 while the stop waits for a child
    that ignores SIGTERM. The lease is still held until the stop's own release, which the
    kill prevents: the guardian must release it once the child's watchdog is gone (after
    the child's grace), not leave the standby waiting the TTL (attack on issue 17)."""
    script = tmp_path / "child.py"
    script.write_text(IGNORES_SIGTERM)
    client = redis_sync.Redis.from_url(nodes.server.url)
    nodes.spawn("a", [sys.executable, str(script)])
    nodes.wait_for("a", "guardian.started")
    assert _wait_leader(client, nodes.namespace) == "a"
    nodes.wait_for("a", "child.started")
    nodes.spawn("b", [sys.executable, str(script)])
    nodes.wait_for("b", "guardian.started")
    time.sleep(0.5)
    before = _redis_ms(client)
    nodes.procs["a"].send_signal(signal.SIGTERM)
    time.sleep(0.15)  # the stop waits for the child's grace
    nodes.procs["a"].send_signal(signal.SIGKILL)
    changed = _wait_event(client, nodes.namespace, "leader_changed", before, holder_id="b")
    released = [e for e in _history(client, nodes.namespace)
                if e["type"] == "lease_released" and e["at"] >= before]
    took = changed["at"] - before
    ttl_ms = int(TTL * 1000)
    assert released and released[0]["holder_id"] == "a", released
    assert took < ttl_ms - 300, f"b led {took} ms after the SIGTERM: the TTL path"
