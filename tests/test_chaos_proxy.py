"""The chaos proxy on a real redis-server: pass, delay, blackhole, heal (late or cut), cut."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.chaos.proxy import ProxyHost
from tests.redis_server import RedisServer


@pytest.fixture
def host(redis_server: RedisServer) -> Iterator[ProxyHost]:
    proxies = ProxyHost()
    try:
        proxies.add("a", redis_server.port)
        yield proxies
    finally:
        proxies.close()


def client(host: ProxyHost, timeout: float = 1.0) -> redis.Redis:
    return redis.Redis(port=host.proxies["a"].port, socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def test_passes_and_delays_both_ways(host: ProxyHost) -> None:
    c = client(host)
    try:
        assert c.ping()
        host.delay("a", 0.1)
        t0 = time.monotonic()
        assert c.set("k", "v") and c.get("k") == b"v"
        took = time.monotonic() - t0
        assert 0.4 <= took < 0.9, took  # two round trips, 0.1 s each way
    finally:
        c.close()


def test_blackhole_stalls_then_heal_delivers_late(host: ProxyHost, redis_server: RedisServer) -> None:
    direct = redis.Redis(port=redis_server.port)
    c = client(host, timeout=0.3)
    try:
        assert c.ping()
        host.blackhole("a")
        with pytest.raises(redis.TimeoutError):
            c.set("late", "1")  # sent, held by the proxy
        assert direct.get("late") is None
        host.heal("a")
        deadline = time.monotonic() + 2
        while direct.get("late") is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert direct.get("late") == b"1"  # the partition healed: the write landed late
        assert client(host).ping()
    finally:
        direct.delete("late")
        direct.close()
        c.close()


def test_heal_with_cut_drops_what_was_held(host: ProxyHost, redis_server: RedisServer) -> None:
    direct = redis.Redis(port=redis_server.port)
    c = client(host, timeout=0.3)
    try:
        assert c.ping()
        host.blackhole("a")
        with pytest.raises(redis.TimeoutError):
            c.set("dropped", "1")
        host.heal("a", cut=True)
        time.sleep(0.2)
        assert direct.get("dropped") is None
        assert client(host).ping()
    finally:
        direct.close()
        c.close()


def test_cut_closes_open_connections(host: ProxyHost) -> None:
    c = client(host, timeout=2.0)
    pubsub = c.pubsub()
    try:
        pubsub.subscribe("x")
        assert pubsub.get_message(timeout=1)["type"] == "subscribe"
        errors: list[BaseException] = []

        def listen() -> None:
            try:
                pubsub.get_message(timeout=1.5)
                pubsub.get_message(timeout=1.5)
            except (redis.ConnectionError, OSError) as e:
                errors.append(e)

        t = threading.Thread(target=listen)
        t.start()
        time.sleep(0.1)
        host.cut("a")
        t.join(3)
        assert errors, "the subscriber did not notice its connection was cut"
    finally:
        pubsub.close()
        c.close()
