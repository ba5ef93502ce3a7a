"""Three real ``coordinator run`` processes on a real redis-server: election and failover."""

from __future__ import annotations

import itertools
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.processes import DaemonProcess, coordinator, daemons
from tests.redis_server import RedisServer, redis_server_binary, running_redis

pytestmark = pytest.mark.e2e
TTL, RENEW = 2.0, 0.5


@pytest.fixture
def server() -> Iterator[RedisServer]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    with running_redis() as s:
        yield s


class EventLog:
    """Every event on coordinator:events, as a subscriber in this process saw it."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe("coordinator:events")
        self.pubsub.get_message(timeout=1)
        self.events: list[dict[str, Any]] = []

    def drain(self, seconds: float = 0.0) -> list[dict[str, Any]]:
        end = time.monotonic() + seconds
        while True:
            msg = self.pubsub.get_message(ignore_subscribe_messages=True,
                                          timeout=max(0.0, end - time.monotonic()) or 0.01)
            if msg is None:
                if time.monotonic() >= end:
                    return self.events
                continue
            self.events.append(json.loads(msg["data"]))

    def wait_for(self, predicate: Any, timeout: float, since: int = 0) -> dict[str, Any]:
        """The first event from index ``since`` on that matches, waiting up to ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            for event in self.events[since:]:
                if predicate(event):
                    return event
            if time.monotonic() >= end:
                break
            self.drain(0.02)
        raise AssertionError(f"no matching event in {timeout}s; saw {self.events[-10:]}")

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


def status(server: RedisServer) -> dict[str, Any]:
    done = coordinator("status", "--json", redis_url=server.url)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def tenures(server: RedisServer) -> int:
    """How many tenures began: terms are Redis-clock ms now, so no longer counts themselves."""
    with redis.Redis(port=server.port) as client:
        entries = client.xrange("{coordinator}:events:history")
    return sum(json.loads(fields[b"event"])["type"] == "leader_changed" for _, fields in entries)


def wait_for_leader(server: RedisServer, timeout: float = 10) -> str:
    end = time.monotonic() + timeout
    client = redis.Redis(port=server.port)
    try:
        while time.monotonic() < end:
            holder = client.hget("{coordinator}:lease:global", "holder_id")
            if holder:
                return holder.decode()
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError("no leader elected")


def assert_no_overlap(procs: dict[str, DaemonProcess]) -> None:
    end = time.time()
    spans = sorted((s, e, n) for n, d in procs.items() for s, e in d.leadership_intervals(end))
    for (_, e1, n1), (s2, _, n2) in itertools.pairwise(spans):
        assert e1 <= s2, f"{n1} led until {e1} but {n2} started leading at {s2}"


def test_three_daemons_elect_one_leader_and_status_lists_them(server: RedisServer, tmp_path: Path) -> None:
    with daemons(server.url, ["a", "b", "c"], tmp_path) as procs:
        leader = wait_for_leader(server)
        time.sleep(1.2)  # a few heartbeats and renewals
        snapshot = status(server)
        assert snapshot["lease"]["holder_id"] == leader and tenures(server) == 1
        assert {c["node_id"] for c in snapshot["controllers"]} == {"a", "b", "c"}
        assert all(c["alive"] and c["status"] == "alive" for c in snapshot["controllers"])
        assert snapshot["automation_mode"] == "running"
        human = coordinator("status", redis_url=server.url)
        assert human.returncode == 0 and f"leader: {leader}" in human.stdout
        assert sum(1 for d in procs.values()
                   for e in d.logs() if e["event"] == "leader.started") == 1


def test_graceful_stop_hands_over_within_100_ms(server: RedisServer, tmp_path: Path) -> None:
    events = EventLog(server.port)
    gaps = []
    try:
        with daemons(server.url, ["a", "b", "c"], tmp_path) as procs:
            for _ in range(2):
                leader = wait_for_leader(server)
                time.sleep(0.6)
                mark = len(events.drain())
                t0 = time.monotonic()
                procs[leader].signal(signal.SIGTERM)
                assert procs[leader].process.wait(timeout=3) == 0
                stopped_in = time.monotonic() - t0
                released = events.wait_for(
                    lambda e, who=leader: e["type"] == "lease_released" and e["holder_id"] == who,
                    3, mark)
                taken = events.wait_for(lambda e, old=released["term"]: e["type"] == "leader_changed"
                                        and e["term"] > old, 3, mark)
                gaps.append(taken["at"] - released["at"])
                assert stopped_in < 1.0, f"SIGTERM took {stopped_in:.2f}s"
            assert_no_overlap(procs)
    finally:
        events.close()
    print(f"graceful handover gaps (ms, Redis clock): {gaps}")
    assert max(gaps) <= 100


def test_kill_9_fails_over_within_ttl_plus_renew_interval(server: RedisServer, tmp_path: Path) -> None:
    """Without the guardian a kill -9 is as a dead host: the lease must expire."""
    events = EventLog(server.port)
    try:
        with daemons(server.url, ["a", "b", "c"], tmp_path,
                     COORDINATOR_GUARDIAN="false") as procs:
            leader = wait_for_leader(server)
            time.sleep(0.8)
            mark = len(events.drain())
            procs[leader].signal(signal.SIGKILL)
            killed_at_ms = int((procs[leader].killed_at or 0) * 1000)
            client = redis.Redis(port=server.port)
            expires_at = int(client.hget("{coordinator}:lease:global", "lease_expires_at") or 0)
            client.close()
            taken = events.wait_for(lambda e: e["type"] == "leader_changed", TTL + RENEW + 2, mark)
            took = (taken["at"] - killed_at_ms) / 1000
            after_expiry = taken["at"] - expires_at
            print(f"kill -9 failover: {took:.3f}s after the kill (TTL {TTL}s), "
                  f"{after_expiry} ms after the lease expired in Redis")
            assert 0 <= after_expiry <= 100
            assert taken["holder_id"] != leader and taken["previous_holder_id"] == leader
            assert took <= TTL + RENEW, f"failover took {took:.3f}s"
            time.sleep(0.5)
            assert_no_overlap(procs)
            terms = [e["term"] for e in events.drain(0.1) if e["type"] == "leader_changed"]
            assert terms == sorted(set(terms))
    finally:
        events.close()


def test_daemons_started_at_once_end_with_exactly_one_leader(server: RedisServer, tmp_path: Path) -> None:
    with daemons(server.url, [f"n{i}" for i in range(5)], tmp_path) as procs:
        wait_for_leader(server)
        time.sleep(1.5)
        leaders = [n for n, d in procs.items()
                   if any(e["event"] == "leader.started" for e in d.logs())]
        assert len(leaders) == 1
        assert tenures(server) == 1


def test_redis_outage_degrades_and_the_cluster_recovers(server: RedisServer, tmp_path: Path) -> None:
    with daemons(server.url, ["a", "b"], tmp_path) as procs:
        wait_for_leader(server)
        server.stop()
        time.sleep(TTL + 0.5)
        server.start_again()
        t0 = time.monotonic()
        leader = wait_for_leader(server, timeout=5)
        back_in = time.monotonic() - t0
        print(f"leader again {back_in:.3f}s after Redis returned")
        assert back_in <= RENEW + 0.5
        assert all(d.process.poll() is None for d in procs.values()), "a daemon exited"
        assert any(e["event"] == "state.changed" and e["to"] == "degraded"
                   for e in procs[leader].logs())
        assert_no_overlap(procs)


def test_bad_settings_exit_2_naming_the_variable(server: RedisServer) -> None:
    for env, name in [({"COORDINATOR_LEASE_TTL": "0"}, "COORDINATOR_LEASE_TTL"),
                      ({"COORDINATOR_RENEW_INTERVAL": "1.5"}, "COORDINATOR_RENEW_INTERVAL"),
                      ({"COORDINATOR_ROLE": "boss"}, "COORDINATOR_ROLE"),
                      ({"COORDINATOR_NODE_ID": "bad id"}, "COORDINATOR_NODE_ID")]:
        done = coordinator("run", redis_url=server.url, **env)
        assert done.returncode == 2 and name in done.stderr, done.stderr
    secret = coordinator("run", redis_url="redis://:hunter2@127.0.0.1:notaport/0")
    assert secret.returncode == 2 and "hunter2" not in secret.stderr + secret.stdout
    assert redis.Redis(port=server.port).dbsize() == 0  # nothing touched Redis


def test_status_exits_1_when_redis_is_unreachable() -> None:
    done = coordinator("status", "--json", redis_url="redis://:hunter2@127.0.0.1:1/0")
    assert done.returncode == 1 and done.stdout == ""
    assert "hunter2" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_handoff_cli_moves_the_lease_to_a_live_node_and_refuses_a_dead_one(
    server: RedisServer, tmp_path: Path
) -> None:
    with daemons(server.url, ["a", "b"], tmp_path):
        leader = wait_for_leader(server)
        other = "b" if leader == "a" else "a"
        time.sleep(0.6)
        refused = coordinator("handoff", "--to", "ghost", redis_url=server.url)
        assert refused.returncode == 2 and "ghost" in refused.stderr
        done = coordinator("handoff", "--to", other, redis_url=server.url)
        assert done.returncode == 0, done.stderr
        assert re.search(rf"{other} holds the lease now \(term \d+\)", done.stdout), done.stdout
        assert status(server)["lease"]["holder_id"] == other


def test_a_leader_frozen_past_its_ttl_steps_down_within_ms_of_waking(
    server: RedisServer, tmp_path: Path
) -> None:
    events = EventLog(server.port)
    try:
        with daemons(server.url, ["a", "b", "c"], tmp_path) as procs:
            leader = wait_for_leader(server)
            time.sleep(0.6)
            mark = len(events.drain())
            procs[leader].signal(signal.SIGSTOP)
            taken = events.wait_for(lambda e: e["type"] == "leader_changed", TTL + RENEW + 2, mark)
            assert taken["holder_id"] != leader
            time.sleep(0.5)
            resumed_at = time.time()
            procs[leader].signal(signal.SIGCONT)
            stepped_down = events.wait_for(
                lambda e: e["type"] == "state_changed" and e["node_id"] == leader
                and e["from"] == "leader", 2, mark)
            woke_ms = stepped_down["at"] - resumed_at * 1000
            print(f"frozen leader announced its step-down {woke_ms:.0f} ms after SIGCONT")
            assert woke_ms <= 100
            stopped = [e for e in procs[leader].logs() if e["event"] == "leader.stopped"]
            assert stopped and stopped[0]["reason"] == "local lease deadline passed"
            assert procs[leader].process.poll() is None  # it stays, as a standby
            terms = [e["term"] for e in events.drain(0.3) if e["type"] == "leader_changed"]
            assert terms == sorted(set(terms))
    finally:
        events.close()


def test_sigterm_with_redis_gone_still_exits_0_within_a_second(
    server: RedisServer, tmp_path: Path
) -> None:
    with daemons(server.url, ["a"], tmp_path) as procs:
        wait_for_leader(server)
        server.stop()
        time.sleep(1.5)  # renewals fail: degraded
        began = time.monotonic()
        procs["a"].signal(signal.SIGTERM)
        status = procs["a"].process.wait(timeout=5)
        took = time.monotonic() - began
        assert any(e["event"] == "state.changed" and e["to"] == "degraded"
                   for e in procs["a"].logs())
    print(f"SIGTERM with Redis gone: exit {status} after {took:.2f}s")
    assert status == 0 and took < 1.0
