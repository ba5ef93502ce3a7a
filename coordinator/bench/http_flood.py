"""/healthz under a connection flood (issue 16): a steady stream of new connections, each
holding its request head open (never sending the blank line that ends it), while a probe
sends ``GET /healthz`` with a timeout at a fixed interval, as the kubelet does.

    python -m coordinator.bench.http_flood [--rate 200] [--seconds 10] [--probe-interval 0.1]
                                           [--probe-timeout 1.0]

The endpoint runs in a process of its own (the coordinator's ``HttpServer`` over a stub
daemon whose loops run), so the flood and the probe never share its event loop. Prints one
JSON object: probes sent, answered 200 within the timeout, their share, latency quantiles
and what the flood's connections saw.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

HELD_HEAD = b"GET /healthz HTTP/1.1\r\nHost: flood\r\n"  # no blank line: the head never ends


async def serve() -> None:
    """The endpoint over a stub daemon; prints its port, serves until stdin closes."""
    from coordinator.connection.eviction import RedisReport
    from coordinator.daemon.http import HttpServer
    from coordinator.daemon.metrics import Metrics
    from coordinator.settings import load_settings

    @dataclass
    class Stub:
        settings: Any = field(default_factory=lambda: load_settings(node_id="flood"))
        metrics: Metrics = field(default_factory=Metrics)
        redis_report: RedisReport = field(default_factory=RedisReport)

        def status_snapshot(self) -> dict[str, Any]:
            return {"role": "leader"}

        def heartbeat_age(self) -> float | None:
            return 0.1

        def lease_deadline_in(self) -> float | None:
            return 10.0

        def loops_running(self) -> bool:
            return True

    server = HttpServer(Stub(), host="127.0.0.1", port=0)
    await server.start()
    print(server.address[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()


@dataclass
class Tally:
    probes: int = 0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    flood_opened: int = 0
    flood_refused: int = 0  # connect failed
    flood_closed_by_server: int = 0

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1


async def hold(port: int, until: float, tally: Tally) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        tally.flood_refused += 1
        return
    tally.flood_opened += 1
    try:
        writer.write(HELD_HEAD)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, until - time.monotonic())):
                await reader.read()  # the server's answer (408, 503) or its close
                tally.flood_closed_by_server += 1
    except OSError:
        tally.flood_closed_by_server += 1
    finally:
        writer.transport.abort()


async def probe(port: int, timeout: float, tally: Tally) -> None:
    tally.probes += 1
    started = time.monotonic()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n")
            status_line = await reader.readline()
            await reader.read()
    except TimeoutError:
        tally.fail("timeout")
        return
    except OSError as e:
        tally.fail(type(e).__name__)
        return
    finally:
        if writer is not None:
            writer.transport.abort()
    parts = status_line.split()
    if len(parts) >= 2 and parts[1] == b"200":
        tally.ok += 1
        tally.latencies.append(time.monotonic() - started)
    else:
        tally.fail(parts[1].decode() if len(parts) >= 2 else "no status line")


async def measure(port: int, rate: float, seconds: float, interval: float, timeout: float) -> Tally:
    tally = Tally()
    start = time.monotonic()
    end = start + seconds
    tasks: list[asyncio.Task[None]] = []

    async def flood() -> None:
        n = 0
        while (now := time.monotonic()) < end:
            due = start + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.ensure_future(hold(port, end + 1.0, tally)))
            n += 1

    async def probes() -> None:
        await asyncio.sleep(min(1.0, seconds / 4))  # the flood reaches its steady state first
        n = 0
        begin = time.monotonic()
        while time.monotonic() < end:
            tasks.append(asyncio.ensure_future(probe(port, timeout, tally)))
            n += 1
            await asyncio.sleep(max(0.0, begin + n * interval - time.monotonic()))

    await asyncio.gather(flood(), probes())
    await asyncio.gather(*tasks, return_exceptions=True)
    return tally


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordinator.bench.http_flood")
    parser.add_argument("--rate", type=float, default=200.0, help="new connections per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--probe-interval", type=float, default=0.1)
    parser.add_argument("--probe-timeout", type=float, default=1.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve())
        return 0
    server = subprocess.Popen([sys.executable, "-m", "coordinator.bench.http_flood", "--serve"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        tally = asyncio.run(measure(port, args.rate, args.seconds, args.probe_interval,
                                    args.probe_timeout))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)
    print(json.dumps({
        "rate_per_s": args.rate, "seconds": args.seconds, "probes": tally.probes,
        "probes_ok_within_timeout": tally.ok,
        "share_ok": round(tally.ok / tally.probes, 4) if tally.probes else None,
        "probe_failures": tally.failures,
        "probe_latency_p50_ms": _ms(quantile(tally.latencies, 0.5)),
        "probe_latency_p99_ms": _ms(quantile(tally.latencies, 0.99)),
        "probe_latency_max_ms": _ms(max(tally.latencies, default=None)),
        "flood_opened": tally.flood_opened, "flood_connect_failed": tally.flood_refused,
        "flood_closed_by_server": tally.flood_closed_by_server,
    }))
    return 0


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


if __name__ == "__main__":
    sys.exit(main())
