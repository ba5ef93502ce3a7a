"""``coordinator demo``: a local Redis, three daemons, a watched failover; everything cleaned up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import redis.asyncio as aioredis

from coordinator.cli.common import EXIT_OK, EXIT_UNAVAILABLE, fail
from coordinator.cli.local_redis import running_redis
from coordinator.cli.watch import render
from coordinator.protocol.lease import read_lease
from coordinator.settings import Settings
from coordinator.watching.status import cluster_status, render_status
from coordinator.watching.watch import watch

NODES = ("demo-1", "demo-2", "demo-3")
FAST = {"COORDINATOR_LEASE_TTL": "2", "COORDINATOR_RENEW_INTERVAL": "0.5",
        "COORDINATOR_HEARTBEAT_INTERVAL": "0.5"}


def say(text: str) -> None:
    """One line of the demo's narration, flushed at once."""
    print(f"\n>>> {text}", flush=True)


async def _answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@contextlib.contextmanager
def _redis_for(settings: Settings, url_given: bool, answers: bool) -> Iterator[str | None]:
    if url_given or answers:
        yield settings.redis_url.get_secret_value() if answers else None
        return
    say("no Redis answers at the default address: starting a local redis-server")
    try:
        with running_redis() as server:
            say(f"redis-server (pid {server.process.pid}) on 127.0.0.1:{server.port}")
            yield server.url
    except RuntimeError as e:
        fail(str(e), EXIT_UNAVAILABLE)
        yield None


def _start_daemons(url: str, namespace: str) -> dict[str, subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORDINATOR_")}
    env.update(FAST, COORDINATOR_REDIS_URL=url, COORDINATOR_NAMESPACE=namespace,
               COORDINATOR_LOG_FORMAT="json")
    return {
        node: subprocess.Popen([sys.executable, "-m", "coordinator", "run"],
                               env={**env, "COORDINATOR_NODE_ID": node},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for node in NODES
    }


async def _holder(client: Any, namespace: str, not_: str | None = None, timeout: float = 10) -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        record = await read_lease(client, namespace, "global")
        if record is not None and record.holder_id != not_ and not record.reserved:
            return record
        await asyncio.sleep(0.01)
    raise TimeoutError("no leader appeared")


async def _script(client: Any, settings: Settings, namespace: str,
                  daemons: dict[str, subprocess.Popen[bytes]]) -> None:
    shown = settings.model_copy(update={"namespace": namespace})
    first = await _holder(client, namespace)
    await asyncio.sleep(1.5)
    say("the live picture (coordinator status):")
    print(render_status(await cluster_status(client, shown)), flush=True)

    say(f"kill -9 {first.holder_id} (the leader, pid {daemons[first.holder_id].pid})")
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    daemons[first.holder_id].kill()
    second = await _holder(client, namespace, not_=first.holder_id)
    say(f"{second.holder_id} leads with term {second.term}, "
        f"{loop.time() - killed_at:.2f}s after the kill (lease TTL 2 s: it waited for the "
        "dead leader's lease to expire, then took over within milliseconds)")

    await asyncio.sleep(1.0)
    say(f"SIGTERM {second.holder_id}: a graceful stop releases the lease at once")
    stopped_at = loop.time()
    daemons[second.holder_id].terminate()
    third = await _holder(client, namespace, not_=second.holder_id)
    say(f"{third.holder_id} leads with term {third.term}, "
        f"{(loop.time() - stopped_at) * 1000:.0f} ms after the SIGTERM")
    await asyncio.sleep(1.0)
    say("the picture now:")
    print(render_status(await cluster_status(client, shown)), flush=True)


async def demo_command(settings: Settings, *, url_given: bool) -> int:
    """Run the demo; every process it started is gone when it returns (also on Ctrl-C)."""
    answers = await _answers(settings.redis_url.get_secret_value())
    with _redis_for(settings, url_given, answers) as url:
        if url is None:
            return fail(f"no Redis answers at {settings.redis_url_redacted}", EXIT_UNAVAILABLE)
        namespace = f"demo-{secrets.token_hex(3)}"
        say(f"starting three daemons ({', '.join(NODES)}) in namespace {namespace}, "
            "lease TTL 2 s, renew every 0.5 s")
        daemons = _start_daemons(url, namespace)
        client = aioredis.Redis.from_url(url)
        watcher = asyncio.ensure_future(_print_events(client, namespace))
        script = asyncio.ensure_future(_script(client, settings, namespace, daemons))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, script.cancel)
        try:
            await script
        except asyncio.CancelledError:
            say("interrupted")
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await _clean_up(client, namespace, daemons)
    say("done: every process the demo started has stopped")
    return EXIT_OK


async def _print_events(client: Any, namespace: str) -> None:
    async for event in watch(client, namespace=namespace):
        print(f"    event  {render(event)}", flush=True)


async def _clean_up(client: Any, namespace: str, daemons: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in daemons.values():
        if process.poll() is None:
            process.terminate()
    for process in daemons.values():
        try:
            await asyncio.to_thread(process.wait, 5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    with contextlib.suppress(Exception):
        found = [k async for k in client.scan_iter(match=f"{{{namespace}}}:*")]
        if found:
            await client.delete(*found)
    with contextlib.suppress(Exception):
        await client.aclose()
