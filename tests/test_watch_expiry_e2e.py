"""A real daemon killed with SIGKILL: every watcher reports its lease's lapse soon after.

Nothing is published when a lease simply expires; the watchers (the Python API in this
process, ``coordinator watch --json`` and ``coordinator watch`` as processes) must still stop
showing the dead leader within a bound of the expiry, and say nothing while it renews.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from coordinator.protocol import keys
from coordinator.protocol.event_models import LeaderChanged, LeaseExpired, Resync, WatchEvent
from coordinator.watching.watch import watch
from tests.processes import FAST, coordinator_env, daemons
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e
NAMESPACE = "e2e-expiry"
TTL = float(FAST["COORDINATOR_LEASE_TTL"])
# how long after the lease's expiry in Redis a watcher may still show the dead leader: the
# watcher re-reads 10 ms after the expiry it knows, a read takes a few ms; the rest is slack
# for a loaded shared VM
BOUND = 1.0


class Lines:
    """A ``coordinator watch`` process; each stdout line kept with its wall time of arrival."""

    def __init__(self, url: str, *flags: str) -> None:
        self.args = ["-m", "coordinator", "watch", *flags, "--redis-url", url,
                     "--namespace", NAMESPACE]
        self.lines: list[tuple[float, str]] = []

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, *self.args, env=coordinator_env("redis://unused"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append((time.time(), line.decode().rstrip("\n")))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.reader, 5)


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout}s")
        await asyncio.sleep(0.01)


def leader_in(event: WatchEvent) -> tuple[str, int] | None:
    if isinstance(event, LeaderChanged | Resync) and event.holder_id and event.term:
        return event.holder_id, event.term
    return None


async def test_a_daemon_killed_9_is_reported_expired_by_every_watcher(
        redis_server: RedisServer, tmp_path: Path) -> None:
    redis = aioredis.Redis(port=redis_server.port)
    lease_key = keys.lease_key(NAMESPACE, "global")
    await redis.delete(lease_key, keys.tenure_key(NAMESPACE, "global"),
                       keys.history_key(NAMESPACE))
    seen: list[tuple[float, WatchEvent]] = []

    async def collect() -> None:
        async for event in watch(redis, namespace=NAMESPACE):
            seen.append((time.time(), event))

    api = asyncio.ensure_future(collect())
    as_json, human = Lines(redis_server.url, "--json"), Lines(redis_server.url)
    try:
        await as_json.start()
        await human.start()
        await until(lambda: seen and as_json.lines and human.lines, 10, "resync")
        with daemons(redis_server.url, ["a"], tmp_path, COORDINATOR_NAMESPACE=NAMESPACE,
                     COORDINATOR_GUARDIAN="false") as procs:  # a dead host, not a crash
            await until(lambda: any(leader_in(e) for _, e in seen), 15, "leader")
            holder, term = next(t for _, e in seen if (t := leader_in(e)))
            assert holder == "a"
            # a leader that keeps renewing is never reported expired
            await asyncio.sleep(3 * TTL)
            everything = [e.type for _, e in seen] + [line for _, line in as_json.lines + human.lines]
            assert not any("lease_expired" in kind for kind in everything), everything
            procs["a"].signal(signal.SIGKILL)
            killed_at = procs["a"].killed_at or 0.0
            await asyncio.to_thread(procs["a"].process.wait, 10)
            expires_at = int(await redis.hget(lease_key, "lease_expires_at") or 0)
            assert expires_at, "the lease lapsed before it could be read"
            want = {"type": "lease_expired", "lease": "global", "holder_id": "a", "term": term,
                    "at": expires_at}

            def api_expired() -> float | None:
                return next((t for t, e in seen if isinstance(e, LeaseExpired)), None)

            def json_expired() -> float | None:
                return next((t for t, line in as_json.lines
                             if json.loads(line)["type"] == "lease_expired"), None)

            sentence = f"lease global expired: a (term {term}) is no longer leader"

            def human_expired() -> float | None:
                return next((t for t, line in human.lines if sentence in line), None)

            await until(lambda: api_expired() and json_expired() and human_expired(),
                        TTL + BOUND + 5, "lease_expired from every watcher")
            api_at, json_at, human_at = api_expired(), json_expired(), human_expired()
            assert api_at is not None and json_at is not None and human_at is not None
            await asyncio.sleep(TTL)  # one report per tenure, even after a while
    finally:
        api.cancel()
        await asyncio.gather(api, return_exceptions=True)
        await as_json.stop()
        await human.stop()
        await redis.aclose()
    expired = [e for _, e in seen if isinstance(e, LeaseExpired)]
    assert [e.to_dict() for e in expired] == [want]
    assert [json.loads(line) for _, line in as_json.lines
            if json.loads(line)["type"] == "lease_expired"] == [want]
    assert len([line for _, line in human.lines if "lease_expired" in line]) == 1
    for name, at in (("watch()", api_at), ("watch --json", json_at), ("watch", human_at)):
        after_kill, after_expiry = at - killed_at, at * 1000 - expires_at
        print(f"\n{name}: lease_expired {after_kill:.3f}s after the kill (TTL {TTL}s), "
              f"{after_expiry:.0f} ms after the lease expired in Redis")
        assert after_expiry >= 0, f"{name} reported a live lease as lapsed"
        assert after_expiry <= BOUND * 1000, f"{name}: {after_expiry:.0f} ms after the expiry"
        assert after_kill <= TTL + BOUND, f"{name}: {after_kill:.3f}s after the kill"
