"""The HTTP endpoint of a real Daemon, on fakeredis and on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.cli.main import EXIT_UNAVAILABLE, EXIT_USAGE, main
from coordinator.connection.eviction import RedisReport, report_for
from coordinator.daemon.daemon import Daemon
from coordinator.daemon.http import (
    EVICT_AFTER,
    HttpServer,
    Request,
    RequestRejected,
    parse_head,
    readiness,
    route,
)
from coordinator.daemon.metrics import Metrics
from coordinator.errors import CoordinatorError
from coordinator.settings import Settings, SettingsError, load_settings
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
STATUS_KEYS = {
    "node_id", "host", "role", "lease_state", "scheduler_enabled", "can_schedule",
    "current_leader_id", "current_term", "lease_expires_at", "last_heartbeat_at",
    "last_lease_operation", "next_lease_operation", "consecutive_renew_failures", "last_error",
    "automation_mode", "redis",
}
SECRET = "s3cret-pw"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def exchange(port: int, raw: bytes, *, timeout: float = 5.0) -> Reply:
    """Send ``raw`` on a new connection and read the whole response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Reply(int(status_line.split(" ")[1]), headers, body)


async def get(port: int, path: str, method: str = "GET") -> Reply:
    return await exchange(port, f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())


def fast_settings(node_id: str, **overrides: Any) -> Settings:
    given: dict[str, Any] = {"redis_url": "redis://127.0.0.1:6379/0", "http_port": 0}
    given.update(overrides)
    return load_settings(node_id=node_id, lease_ttl=2, renew_interval=0.5,
                         heartbeat_interval=0.5, **given)


@contextlib.asynccontextmanager
async def serving(settings: Settings, redis: Any = None,
                  **server_options: Any) -> AsyncIterator[tuple[Daemon, int]]:
    """A started daemon with its HTTP server on an ephemeral loopback port."""
    daemon = Daemon(settings, redis=redis)
    assert settings.http_port is not None
    server = HttpServer(daemon, host=settings.http_host, port=settings.http_port,
                        **server_options)
    await server.start()
    await daemon.start()
    try:
        yield daemon, server.address[1]
    finally:
        await daemon.stop()
        await server.stop()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics body, keyed by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def renews(daemon: Daemon) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "coordinator_lease_renew_duration_seconds_count", {"result": "ok"})
    return value or 0.0


# ---- a real daemon behind the endpoint -----------------------------------------------------

async def test_leader_answers_every_endpoint(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis) as (daemon, port):
        assert daemon.state.role.value == "leader"
        health, ready = await get(port, "/healthz"), await get(port, "/readyz")
        assert (health.status, health.body) == (200, b"ok\n")
        assert (ready.status, ready.body) == (200, b"ready\n")
        status = await get(port, "/status")
        assert status.status == 200 and status.headers["content-type"] == "application/json"
        assert set(status.json()) == STATUS_KEYS
        assert status.json()["role"] == "leader" and status.json()["current_term"] == daemon.state.term
        metrics = await get(port, "/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        got = samples(metrics.body.decode())
    assert got[("coordinator_is_leader", frozenset())] == 1
    assert got[("coordinator_lease_term", frozenset())] == daemon.state.term
    assert got[("coordinator_role", frozenset({("role", "leader")}))] == 1
    assert got[("coordinator_lease_state", frozenset({("state", "held")}))] == 1
    assert 0 < got[("coordinator_lease_deadline_seconds", frozenset())] <= 2
    assert got[("coordinator_state_transitions_total",
                frozenset({("from", "standby"), ("to", "leader")}))] == 1
    assert got[("coordinator_lease_renew_duration_seconds_count",
                frozenset({("result", "ok")}))] >= 1
    assert got[("coordinator_heartbeat_duration_seconds_count",
                frozenset({("result", "ok")}))] >= 1
    assert got[("coordinator_lease_renew_failures_total", frozenset())] == 0


async def test_standby_is_ready_but_not_leader(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis), \
            serving(fast_settings("n2"), redis) as (daemon, port):
        assert daemon.state.role.value == "standby"
        assert (await get(port, "/readyz")).status == 200
        status = (await get(port, "/status")).json()
        assert (status["role"], status["current_leader_id"]) == ("standby", "n1")
        got = samples((await get(port, "/metrics")).body.decode())
    assert got[("coordinator_is_leader", frozenset())] == 0
    assert got[("coordinator_lease_state", frozenset({("state", "held_by_other")}))] == 1
    assert got[("coordinator_lease_deadline_seconds", frozenset())] == 0


async def test_degraded_daemon_is_alive_not_ready_and_leaks_no_secret() -> None:
    # nothing listens on port 1: every heartbeat and lease attempt fails at once
    settings = fast_settings("n1", redis_url=f"redis://coordinator:{SECRET}@127.0.0.1:1/0")
    async with serving(settings) as (daemon, port):
        assert daemon.state.role.value == "degraded"
        replies = {path: await get(port, path) for path in
                   ("/healthz", "/readyz", "/status", "/metrics", "/nowhere")}
    assert replies["/healthz"].status == 200
    assert replies["/readyz"].status == 503
    assert replies["/readyz"].body == b"not ready: role is degraded\n"
    assert replies["/status"].json()["role"] == "degraded"
    assert replies["/status"].json()["last_error"]
    got = samples(replies["/metrics"].body.decode())
    assert got[("coordinator_role", frozenset({("role", "degraded")}))] == 1
    assert got[("coordinator_lease_renew_failures_total", frozenset())] >= 1
    assert got[("coordinator_heartbeat_failures_total", frozenset())] >= 1
    assert got[("coordinator_heartbeat_age_seconds", frozenset())] == float("inf")
    for reply in replies.values():
        assert SECRET.encode() not in reply.body
        assert SECRET not in json.dumps(reply.headers)


async def test_healthz_is_503_before_start_and_after_stop(redis: Any) -> None:
    daemon = Daemon(fast_settings("n1"), redis=redis)
    server = HttpServer(daemon, host="127.0.0.1", port=0)
    await server.start()
    port = server.address[1]
    try:
        assert (await get(port, "/healthz")).status == 503
        await daemon.start()
        assert (await get(port, "/healthz")).status == 200
        await daemon.stop()
        assert (await get(port, "/healthz")).status == 503
        assert (await get(port, "/readyz")).body == b"not ready: not running\n"
    finally:
        await daemon.stop()
        await server.stop()


# ---- what readiness means (plain values, no server) -----------------------------------------

@dataclass
class StubDaemon:
    role: str = "standby"
    age: float | None = 0.1
    running: bool = True
    settings: Settings = field(default_factory=lambda: fast_settings("stub"))
    metrics: Metrics = field(default_factory=Metrics)
    redis_report: RedisReport = field(default_factory=RedisReport)

    def status_snapshot(self) -> dict[str, Any]:
        return {"role": self.role}

    def heartbeat_age(self) -> float | None:
        return self.age

    def lease_deadline_in(self) -> float | None:
        return None

    def loops_running(self) -> bool:
        return self.running


@pytest.mark.parametrize(("stub", "reason"), [
    (StubDaemon(role="leader"), None),
    (StubDaemon(role="standby", age=1.49), None),
    (StubDaemon(role="standby", age=1.5), "last heartbeat 1.5s ago"),
    (StubDaemon(role="degraded"), "role is degraded"),
    (StubDaemon(age=None), "no heartbeat yet"),
    (StubDaemon(running=False), "not running"),
])
def test_ready_means_leader_or_standby_with_a_heartbeat_younger_than_three_intervals(
    stub: StubDaemon, reason: str | None
) -> None:
    assert readiness(stub) == reason


def test_a_redis_that_may_evict_the_lease_is_a_warning_on_readyz_not_unreadiness() -> None:
    risky = StubDaemon(role="leader", redis_report=report_for({"allkeys-lru"}))
    ready = route(risky, Request("GET", "/readyz"))
    lines = ready.body.decode().splitlines()
    assert ready.status == 200 and lines[0] == "ready"
    assert lines[1].startswith("warning: maxmemory-policy allkeys-lru lets Redis evict the lease")
    assert lines[1].endswith("set maxmemory-policy noeviction, or use a dedicated Redis")
    unready = route(StubDaemon(role="degraded", redis_report=risky.redis_report),
                    Request("GET", "/readyz"))
    assert unready.status == 503
    assert unready.body.decode().splitlines()[0] == "not ready: role is degraded"
    status = json.loads(route(risky, Request("GET", "/status")).body)
    assert status["redis"] == {"maxmemory_policy": "allkeys-lru",
                               "warnings": list(risky.redis_report.warnings)}
    safe = route(StubDaemon(redis_report=report_for({"noeviction"})), Request("GET", "/readyz"))
    assert (safe.status, safe.body) == (200, b"ready\n")


# ---- the strict request parser --------------------------------------------------------------

def test_parser_accepts_a_plain_get_and_drops_the_query() -> None:
    request = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
    assert (request.method, request.path) == ("GET", "/metrics")
    assert parse_head(b"GET /healthz HTTP/1.0\r\n\r\n").path == "/healthz"  # 1.0 needs no Host


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /healthz\r\n\r\n", 400),
    (b"GET  /healthz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET http://a/healthz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX: b\x00c\r\n\r\n", 400),
    (b"GET /h\xffz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 413),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 413),
])
def test_parser_refuses_anything_unusual(head: bytes, status: int) -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_head(head)
    assert caught.value.response.status == status


async def test_wrong_method_path_and_body_get_their_status_codes(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis) as (_, port):
        post = await get(port, "/status", method="POST")
        head = await get(port, "/healthz", method="HEAD")
        missing = await get(port, "/admin")
        body = await exchange(
            port, b"GET /status HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        bad = await exchange(port, b"BREW /pot HTCPCP/1.0\r\n\r\n")
    assert (post.status, post.headers["allow"], head.status) == (405, "GET", 405)
    assert (missing.status, body.status, bad.status) == (404, 413, 400)
    assert all(r.headers["connection"] == "close" for r in (post, missing, body, bad))


# ---- slow and hostile clients ---------------------------------------------------------------

async def test_slowloris_is_cut_off_while_health_and_renewals_go_on(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis) as (daemon, port):
        renews_before = renews(daemon)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        slow_reply: bytes | None = None
        health_times: list[float] = []
        for byte in b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n":
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                break
            t = time.monotonic()
            assert (await get(port, "/healthz")).status == 200
            health_times.append(time.monotonic() - t)
            with contextlib.suppress(TimeoutError):
                slow_reply = await asyncio.wait_for(reader.read(), 0.5)
            if slow_reply is not None:
                break
        cut_off_after = time.monotonic() - started
        writer.close()
        assert slow_reply is not None and slow_reply.startswith(b"HTTP/1.1 408 ")
        assert cut_off_after < 3.0  # the 2 s head timeout, not the length of the request
        # answered at once (well under the head timeout a blocked server would show)
        assert max(health_times) < 1.0
        # the leader renewed every 0.5 s meanwhile (one of slack for the first and last)
        assert renews(daemon) - renews_before >= int(cut_off_after / 0.5) - 1
        assert daemon.can_schedule()


async def test_when_full_the_longest_idle_connection_makes_room(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis, max_connections=3) as (daemon, port):
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.05)
        # a burst, none idle for long yet: a newcomer that sends its head at once is answered
        # from an overflow place, evicting nobody; one that sends nothing in time gets 503
        assert (await get(port, "/healthz")).status == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await asyncio.wait_for(reader.read(), 2)).startswith(b"HTTP/1.1 503 ")
        writer.close()
        await asyncio.sleep(EVICT_AFTER)
        assert (await get(port, "/healthz")).status == 200  # evicts idle[0]
        assert await asyncio.wait_for(idle[0][0].read(), 1) == b""  # dropped without an answer
        assert (await get(port, "/healthz")).status == 200  # evicts idle[1]
        idle[2][1].write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await asyncio.wait_for(idle[2][0].read(), 1)).startswith(b"HTTP/1.1 200 ")
        for _, writer in idle:
            writer.close()
        assert daemon.can_schedule()


async def test_a_flood_of_slow_clients_does_not_starve_probes(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis, max_connections=8) as (daemon, port):
        renews_before = renews(daemon)

        async def crawl() -> None:
            with contextlib.suppress(ConnectionError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                for byte in b"GET /healthz HTTP/1.1\r\n":
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.1)
                writer.close()

        slow = [asyncio.ensure_future(crawl()) for _ in range(40)]
        # past EVICT_AFTER with room for a loaded loop that admits the burst late (the crawl
        # lasts 2.4 s, so the held connections are still slow when the probes come)
        await asyncio.sleep(EVICT_AFTER + 0.3)
        statuses = []
        for _ in range(8):
            statuses.append((await get(port, "/healthz")).status)
            await asyncio.sleep(0.1)
        await asyncio.gather(*slow)
        assert statuses == [200] * 8
        assert renews(daemon) - renews_before >= 1
        assert daemon.can_schedule()


async def test_with_the_overflow_full_a_newcomer_is_refused_at_once(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis, max_connections=1, max_overflow=0) as (_, port):
        _, held = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        assert (await get(port, "/healthz")).status == 503  # nobody evictable, no overflow
        held.close()


async def test_a_steady_stream_of_held_connections_does_not_refuse_probes(redis: Any) -> None:
    """New connections that each hold their head open, arriving faster than the connection
    cap can turn over (8 per EVICT_AFTER), while probes come every 0.1 s: every probe is
    answered 200 (it once got 503 "too many connections" about half the time)."""
    async with serving(fast_settings("n1"), redis, max_connections=8) as (daemon, port):
        held: list[asyncio.StreamWriter] = []

        async def flood(until: float) -> None:
            while time.monotonic() < until:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(b"GET /healthz HTTP/1.1\r\nHost: flood\r\n")  # never ends
                    held.append(writer)
                await asyncio.sleep(0.01)  # 100 a second, 3 times what the cap turns over

        flooding = asyncio.ensure_future(flood(time.monotonic() + 2.0))
        await asyncio.sleep(EVICT_AFTER + 0.3)  # the cap is full and turning over
        statuses = []
        for _ in range(10):
            statuses.append((await get(port, "/healthz")).status)
            await asyncio.sleep(0.1)
        await flooding
        for writer in held:
            writer.transport.abort()
        assert len(held) >= 50  # the flood did run at well over the cap's turnover
        assert statuses == [200] * 10
        assert daemon.can_schedule()


async def test_a_one_megabyte_head_is_refused_without_buffering_it(redis: Any) -> None:
    async with serving(fast_settings("n1"), redis) as (daemon, port):
        chunk = b"X-Filler: " + b"a" * (64 * 1024 - 12) + b"\r\n"
        tracemalloc.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
            sent = 0
            with contextlib.suppress(ConnectionError):
                while sent < 1024 * 1024:
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), 2)
                    sent += len(chunk)
            try:
                reply = await asyncio.wait_for(reader.read(), 2)
            except ConnectionError:
                reply = b""  # reset before the answer arrived: refused all the same
            writer.close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert reply == b"" or reply.startswith(b"HTTP/1.1 431 ")
        # the server holds at most a few times MAX_HEAD_BYTES plus one socket read
        assert peak < 1024 * 1024 // 2, f"peak {peak} bytes"
        assert (await get(port, "/healthz")).status == 200
        assert daemon.can_schedule()


# ---- the listener and its settings ----------------------------------------------------------

async def test_listener_binds_loopback_by_default(redis: Any) -> None:
    assert Settings().http_host == "127.0.0.1"
    daemon = Daemon(fast_settings("n1"), redis=redis)
    server = HttpServer(daemon, host=daemon.settings.http_host, port=0)
    await server.start()
    try:
        assert server.address[0] == "127.0.0.1"
    finally:
        await server.stop()


async def test_a_busy_port_is_a_coordinator_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = HttpServer(StubDaemon(), host="127.0.0.1", port=taken.getsockname()[1])
        with pytest.raises(CoordinatorError, match=r"cannot listen for HTTP on 127\.0\.0\.1"):
            await server.start()


async def test_stop_closes_connections_still_reading_and_returns_at_once() -> None:
    server = HttpServer(StubDaemon(), host="127.0.0.1", port=0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.address[1])
    writer.write(b"GET /hea")
    await writer.drain()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 0.5
    assert await asyncio.wait_for(reader.read(), 1) == b""
    writer.close()


def test_http_port_is_off_unless_set_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COORDINATOR_HTTP_PORT", raising=False)
    assert load_settings().http_port is None
    monkeypatch.setenv("COORDINATOR_HTTP_PORT", "")
    assert load_settings().http_port is None
    monkeypatch.setenv("COORDINATOR_HTTP_PORT", "9180")
    assert load_settings().http_port == 9180
    for bad in ("65536", "-1", "http"):
        monkeypatch.setenv("COORDINATOR_HTTP_PORT", bad)
        with pytest.raises(SettingsError, match="COORDINATOR_HTTP_PORT"):
            load_settings()
    monkeypatch.delenv("COORDINATOR_HTTP_PORT")
    assert main(["run", "--http-port", "70000"]) == EXIT_USAGE
    assert main(["run", "--http-host", "not an address"]) == EXIT_USAGE


# ---- the real CLI -------------------------------------------------------------------------

async def _spawn_run(server: RedisServer, port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "COORDINATOR_REDIS_URL": server.url, "COORDINATOR_HTTP_PORT": str(port),
           "COORDINATOR_LOG_FORMAT": "json", "COORDINATOR_NODE_ID": "cli-node",
           "COORDINATOR_NAMESPACE": "httpcli"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coordinator", "run", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


@pytest.mark.e2e
async def test_cli_run_serves_http_on_the_logged_port_and_stops_it(
    redis_server: RedisServer,
) -> None:
    process = await _spawn_run(redis_server, 0)
    assert process.stderr is not None
    try:
        port = None
        while port is None:
            line = await asyncio.wait_for(process.stderr.readline(), 10)
            assert line, "the daemon exited before listening"
            event = json.loads(line)
            if event.get("event") == "http.listening":
                port = int(event["port"])
        for _ in range(100):  # /healthz is 503 until the start-up checklist is done
            if (await get(port, "/healthz")).status == 200:
                break
            await asyncio.sleep(0.05)
        assert (await get(port, "/readyz")).status == 200
        assert (await get(port, "/status")).json()["node_id"] == "cli-node"
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.stderr.read(), 10)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    with pytest.raises(ConnectionRefusedError):
        await get(port, "/healthz")


@pytest.mark.e2e
async def test_cli_run_exits_1_when_the_http_port_is_taken(redis_server: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        process = await _spawn_run(redis_server, taken.getsockname()[1])
        assert process.stderr is not None
        err = await asyncio.wait_for(process.stderr.read(), 10)
        assert await asyncio.wait_for(process.wait(), 10) == EXIT_UNAVAILABLE
    assert b"cannot listen for HTTP on 127.0.0.1" in err
