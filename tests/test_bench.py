"""`coordinator bench --quick --json` against a real redis-server: every figure is there and
no key is left behind. It asserts that figures exist, never that they are fast."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.processes import ROOT, coordinator, coordinator_env
from tests.redis_server import RedisServer, redis_server_binary, running_redis

pytestmark = [pytest.mark.e2e, pytest.mark.bench]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    with running_redis() as s:
        yield s


@pytest.fixture(scope="module")
def quick_run(server: RedisServer) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "coordinator", "bench", "--quick", "--json"],
        env=coordinator_env(server.url), cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), took


def at(results: dict[str, Any], path: str) -> Any:
    node: Any = results
    for key in path.split("."):
        assert isinstance(node, dict) and key in node, f"{path}: no {key!r} in {node!r}"
        node = node[key]
    return node


POSITIVE = [
    "latency.renew.p50_ms", "latency.renew.p99_ms", "latency.bare_evalsha.p50_ms",
    "latency.bare_evalsha.p99_ms", "latency.renew_to_bare_p50_ratio", "latency.acquire.p50_ms",
    "latency.acquire.p99_ms", "latency.release.p50_ms",
    "redis_cpu.renew.usec_per_call", "redis_cpu.bare_evalsha.usec_per_call",
    "redis_cpu.reference_lease_like.usec_per_call", "redis_cpu.heartbeat.usec_per_call",
    "scale.load.achieved_beats_per_s", "scale.load.redis_cpu_percent",
    "scale.load.redis_cpu_percent_at_target", "scale.status.inprocess.p50_ms",
    "scale.load.bare_evalsha.redis_cpu_percent", "scale.load.heartbeat_to_bare_cpu_ratio",
    "many_leases.renew_many.redis_cpu_ms_per_round",
    "many_leases.renew_many.round_trips_per_node_per_interval",
    "many_leases.single_lease_daemons.redis_cpu_ms_per_round",
    "many_leases.renew_many.script_usec_per_lease", "many_leases.one_call_of_all_leases.script_ms",
    "scale.status.cli.p50_ms", "scale.status.cli_startup.p50_ms",
    "watch.pubsub.p50_ms", "watch.pubsub.p99_ms", "watch.watcher.p50_ms", "watch.watcher.p99_ms",
    "failover.crash_from_kill.p50_ms",
    "idle.leader.rss_mb", "idle.standby.rss_mb", "idle.window_s",
]
# on a millisecond clock, or over a short window of 10 ms CPU ticks, 0 is a fair reading
NOT_NEGATIVE = [
    "failover.graceful.p50_ms", "failover.graceful.p99_ms", "failover.crash_after_expiry.p50_ms",
    "idle.leader.cpu_percent", "idle.standby.cpu_percent",
]


@pytest.mark.parametrize("path", POSITIVE)
def test_figure_is_a_positive_number(quick_run: tuple[dict[str, Any], float], path: str) -> None:
    value = at(quick_run[0], path)
    assert isinstance(value, int | float) and not isinstance(value, bool) and value > 0, value


@pytest.mark.parametrize("path", NOT_NEGATIVE)
def test_figure_is_a_number_not_below_zero(quick_run: tuple[dict[str, Any], float],
                                           path: str) -> None:
    value = at(quick_run[0], path)
    assert isinstance(value, int | float) and not isinstance(value, bool) and value >= 0, value


def test_every_sample_was_taken(quick_run: tuple[dict[str, Any], float]) -> None:
    results, took = quick_run
    assert at(results, "failover.graceful.n") == 2 and at(results, "failover.graceful.missed") == 0
    assert at(results, "failover.crash_from_kill.n") == 1
    assert at(results, "watch.pubsub.missed") == 0 and at(results, "watch.watcher.missed") == 0
    status = at(results, "scale.status")
    assert status["listed"] == status["cli_listed"] == status["controllers"] > 0
    assert status["scan_or_keys_calls"] == 0
    assert took < 30, f"the quick run took {took:.1f}s"


def test_no_key_is_left_behind(quick_run: tuple[dict[str, Any], float],
                               server: RedisServer) -> None:
    assert at(quick_run[0], "cleanup.keys_left") == 0
    assert at(quick_run[0], "cleanup.keys_deleted") > 0
    client = redis.Redis(port=server.port)
    try:
        assert client.dbsize() == 0  # the server was fresh: nothing at all may remain
    finally:
        client.close()


def test_an_unknown_part_is_a_usage_error(server: RedisServer) -> None:
    done = coordinator("bench", "--parts", "latency,nope", redis_url=server.url)
    assert done.returncode == 2 and "nope" in done.stderr and done.stdout == ""
