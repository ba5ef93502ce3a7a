"""Many controllers: heartbeat cost with N registered, N heartbeating once a second, status."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from coordinator.bench.controllers import HEARTBEAT_INTERVAL, RETENTION, beat_all, simulated
from coordinator.bench.latency import evalsha_cost
from coordinator.bench.processes import child_env, python_module, read_line, write_line
from coordinator.bench.redis_info import command_stats, cpu_seconds, script_calls, stats_delta
from coordinator.bench.stats import summary_ms
from coordinator.settings import load_settings
from coordinator.watching.status import cluster_status

LOAD_WORKERS = 2  # processes sharing the simulated controllers


async def register(redis: Any, namespace: str, controllers: int) -> None:
    """Give each of ``controllers`` simulated controllers its first heartbeat."""
    await beat_all(simulated(redis, namespace, range(controllers)), concurrency=16)


async def heartbeat_cost(redis: Any, namespace: str, controllers: int, calls: int
                         ) -> dict[str, Any]:
    """Redis CPU per heartbeat while ``controllers`` are registered (one connection)."""
    beats = simulated(redis, namespace, range(min(controllers, calls)))
    turn = iter(range(calls))

    async def one() -> Any:
        return await beats[next(turn) % len(beats)].beat()

    return {**await evalsha_cost(redis, calls, one), "controllers": controllers}


async def sustained_load(redis: Any, url: str, namespace: str, controllers: int,
                         seconds: float) -> dict[str, Any]:
    """Every controller heartbeats once a second for ``seconds`` from a few worker processes,
    then the same workers send as many bare ``EVALSHA`` calls at the same rate; Redis's own CPU
    time (``INFO cpu``) over each window is the cost, and their ratio the issue's figure."""
    beats = await _load_window(redis, url, namespace, controllers, seconds, "heartbeat")
    bare = await _load_window(redis, url, namespace, controllers, seconds, "bare")
    return {**beats, "bare_evalsha": bare,
            "heartbeat_to_bare_cpu_ratio": _ratio(beats["redis_cpu_percent_at_target"],
                                                  bare["redis_cpu_percent_at_target"])}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


async def _load_window(redis: Any, url: str, namespace: str, controllers: int,
                       seconds: float, kind: str) -> dict[str, Any]:
    """One paced window of ``kind`` (``heartbeat`` or ``bare``) calls from the workers."""
    share = -(-controllers // LOAD_WORKERS)
    workers = []
    try:
        for w in range(LOAD_WORKERS):
            first, count = w * share, min(share, controllers - w * share)
            workers.append(await asyncio.create_subprocess_exec(
                *python_module("coordinator.bench.load_worker", url, namespace, str(first),
                               str(count), str(count / HEARTBEAT_INTERVAL), str(seconds), kind),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env=child_env(url)))
        for worker in workers:
            line = await read_line(worker, 30)
            if line != "ready":
                raise RuntimeError(f"load worker did not start: {line!r}")
        cpu_before, stats_before = await cpu_seconds(redis), await command_stats(redis)
        start = time.monotonic()
        for worker in workers:
            write_line(worker, "go")
        reports = [json.loads(await read_line(w, seconds + 30)) for w in workers]
        elapsed = time.monotonic() - start
        cpu = await cpu_seconds(redis) - cpu_before
        evalsha = script_calls(stats_delta(stats_before, await command_stats(redis)))
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
            await worker.wait()
    beats = sum(int(r["beats"]) for r in reports)
    rate = beats / elapsed
    target = controllers / HEARTBEAT_INTERVAL
    percent = 100 * cpu / elapsed
    return {
        "controllers": controllers, "seconds": round(elapsed, 2), "workers": LOAD_WORKERS,
        "target_beats_per_s": round(target), "achieved_beats_per_s": round(rate),
        "redis_cpu_percent": round(percent, 2),
        # linear in the rate: what the full target would cost if the workers fell short
        "redis_cpu_percent_at_target": round(percent * target / rate, 2) if rate else None,
        "heartbeat_usec_per_call": round(evalsha.usec / evalsha.calls, 3) if evalsha else None,
    }


async def status_time(redis: Any, url: str, namespace: str, controllers: int, runs: int
                      ) -> dict[str, Any]:
    """``cluster_status`` in this process, and ``coordinator status --json`` as a command."""
    settings = load_settings(redis_url=url, namespace=namespace,
                             heartbeat_retention=str(RETENTION))
    inprocess, listed = [], 0
    before = await command_stats(redis)
    for _ in range(3 * runs):
        start = time.perf_counter()
        snapshot = await cluster_status(redis, settings)
        inprocess.append((time.perf_counter() - start) * 1000)
        listed = len(snapshot["controllers"])
    delta = stats_delta(before, await command_stats(redis))
    scans = sum(delta[c].calls for c in ("scan", "keys") if c in delta)
    cli, startup, cli_listed = [], [], 0
    for _ in range(runs):
        # interleaved on a noisy machine: the command's start-up alone (a namespace with no
        # controllers), then the same command reading every controller
        startup.append((await status_command(url, f"{namespace}-empty"))[0])
        took, out = await status_command(url, namespace)
        cli.append(took)
        cli_listed = len(json.loads(out)["controllers"])
    return {
        "controllers": controllers, "listed": listed, "cli_listed": cli_listed,
        "inprocess": summary_ms(inprocess), "cli": summary_ms(cli),
        "cli_startup": summary_ms(startup),
        "scan_or_keys_calls": scans,
    }



async def status_command(url: str, namespace: str) -> tuple[float, bytes]:
    """The wall time (ms) of one ``coordinator status --json`` process, start to exit, and its
    output; RuntimeError if it fails (a failed command's time would be no status's time)."""
    start = time.perf_counter()
    done = await asyncio.create_subprocess_exec(
        *python_module("coordinator", "status", "--json"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(url, namespace=namespace, heartbeat_retention=str(RETENTION)))
    out, err = await done.communicate()
    took = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["(nothing on stderr)"]
        raise RuntimeError(f"`coordinator status --json` exited {done.returncode}: {last[0]}")
    return took, out
