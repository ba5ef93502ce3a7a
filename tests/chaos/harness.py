"""One chaos run: a real redis-server (AOF on), N daemons behind proxies, faults from a seed.

``run(options)`` starts everything, injects faults until the time is up (each followed by a
wait until the cluster is whole again with a leader), stops the daemons with SIGTERM and
returns the recording (also saved as ``recording.json`` in the work directory). Every
process, thread and proxy it started is gone when it returns or raises.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.cluster import PROBE_NAME, Cluster, find_libfaketime, now_ms
from tests.chaos.faults import choose, plan
from tests.chaos.proxy import ProxyHost
from tests.chaos.recorder import Recorder
from tests.chaos.recording import KINDS, Fault, Recording, RunSettings
from tests.redis_server import RedisServer, running_redis

SETTLE_TIMEOUT = 20.0
STEADY_MS = 300  # a leader renewing for this long, every daemon up: the cluster is settled


@dataclass
class Options:
    """What one run does."""

    seed: int
    seconds: float
    workdir: Path
    nodes: tuple[str, ...] = ("a", "b", "c")
    lease_ttl: float = 2.0
    renew_interval: float = 0.5
    heartbeat_interval: float = 0.5
    renew_failure_threshold: int = 2
    kinds: tuple[str, ...] = KINDS
    say: Callable[[str], None] = field(default=print)

    def env(self) -> dict[str, str]:
        return {"COORDINATOR_LEASE_TTL": str(self.lease_ttl),
                "COORDINATOR_RENEW_INTERVAL": str(self.renew_interval),
                "COORDINATOR_HEARTBEAT_INTERVAL": str(self.heartbeat_interval),
                "COORDINATOR_RENEW_FAILURE_THRESHOLD": str(self.renew_failure_threshold),
                "COORDINATOR_HISTORY_MAXLEN": "1000000"}


def run(options: Options) -> Recording:
    """Run the faults of ``options.seed`` for ``options.seconds``; return what was recorded."""
    o = options
    o.workdir.mkdir(parents=True, exist_ok=True)
    libfaketime = find_libfaketime()
    kinds = o.kinds if libfaketime else tuple(k for k in o.kinds if k != "clock_jump")
    rec = Recording(seed=o.seed, settings=RunSettings(
        lease_ttl=o.lease_ttl, renew_interval=o.renew_interval,
        heartbeat_interval=o.heartbeat_interval, renew_failure_threshold=o.renew_failure_threshold,
        daemons=len(o.nodes), faketime=libfaketime is not None))
    if libfaketime is None and "clock_jump" in o.kinds:
        rec.notes.append("libfaketime not found (apt-get install faketime): clock_jump left out")
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(running_redis("--appendonly", "yes", "--appendfsync", "always"))
        rec.settings.redis = _redis_version(server)
        proxies = ProxyHost()
        stack.callback(proxies.close)
        ports = {node: proxies.add(node, server.port).port for node in o.nodes}
        recorder = Recorder(server.port, o.workdir, PROBE_NAME)
        stack.callback(recorder.stop)
        recorder.start()
        cluster = Cluster(o.workdir, list(o.nodes), ports, o.env(), libfaketime)
        stack.callback(cluster.close)
        chaos = _Chaos(o, server, proxies, recorder, cluster)

        rec.started_ms = now_ms()
        for node in o.nodes:
            cluster.start(node)
        if chaos.settle() is None:
            rec.notes.append("the cluster had no leader within "
                             f"{SETTLE_TIMEOUT:.0f} s of starting")
        end = time.monotonic() + o.seconds
        for index, (kind, params, calm) in enumerate(
                plan(o.seed, ttl=o.lease_ttl, renew=o.renew_interval, kinds=kinds)):
            if time.monotonic() >= end:
                break
            time.sleep(calm)
            fault = chaos.inject(index, kind, dict(params))
            rec.faults.append(fault)
            took = "never" if fault.settled_ms is None else f"{fault.settled_ms - fault.started_ms} ms"
            o.say(f"#{index} {kind} target={fault.target} leader_before={fault.leader_before} "
                  f"term_before={fault.term_before} settled after {took}")

        chaos.settle()
        rec.redis_final, rec.watcher_final = chaos.final_pictures()
        rec.history = recorder.history()
        cluster.stop_all()
        rec.ended_ms = now_ms()
        recorder.stop()
        rec.channel = list(recorder.channel)
        rec.samples = list(recorder.samples)
        rec.incarnations, rec.writes = cluster.collect()
    rec.save(o.workdir / "recording.json")
    return rec


def _redis_version(server: RedisServer) -> str:
    import redis

    client = redis.Redis(port=server.port)
    try:
        return str(client.info("server").get("redis_version", ""))
    finally:
        client.close()


class _Chaos:
    """Injects one fault at a time and waits for the cluster to be whole again."""

    def __init__(self, o: Options, server: RedisServer, proxies: ProxyHost, recorder: Recorder,
                 cluster: Cluster) -> None:
        self.o, self.server, self.proxies = o, server, proxies
        self.recorder, self.cluster = recorder, cluster
        self.failover_wait = o.lease_ttl + o.renew_interval + 3.0

    def leader(self) -> tuple[str | None, int | None]:
        s = self.recorder.latest
        if s is None or s.holder_id is None or not self.cluster.running(s.holder_id):
            return None, s.term if s else None
        return s.holder_id, s.term

    def inject(self, index: int, kind: str, params: dict[str, Any]) -> Fault:
        leader, term = self.leader()
        fault = Fault(index, kind, now_ms(), leader_before=leader, term_before=term, params=params)
        getattr(self, "_" + kind)(fault)
        fault.settled_ms = self.settle()
        return fault

    def settle(self) -> int | None:
        """Restart what is down, then wait for every daemon up and a leader renewing steadily."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        steady_since: int | None = None
        while time.monotonic() < deadline:
            for node in self.cluster.reap_unexpected():
                self.o.say(f"!! {node} exited by itself; restarting it")
            for node in self.cluster.nodes:
                if not self.cluster.running(node):
                    self.cluster.start(node)
            ready = self.cluster.mark_ready()
            s = self.recorder.latest
            leading = (s is not None and s.holder_id is not None and s.renewed_at is not None
                       and self.cluster.running(s.holder_id)
                       and s.at - s.renewed_at <= self.o.renew_interval * 1000 + 250)
            if ready and leading:
                steady_since = steady_since or now_ms()
                if now_ms() - steady_since >= STEADY_MS:
                    return steady_since
            else:
                steady_since = None
            time.sleep(0.05)
        return None

    def final_pictures(self) -> tuple[list[Any] | None, list[Any] | None]:
        """Redis's lease and the watcher's picture of it, once both have been still a second."""
        for _ in range(5):
            before = self.recorder.redis_lease()
            time.sleep(1.0)
            watcher, after = self.recorder.watcher_picture(), self.recorder.redis_lease()
            if before == after:
                return after, watcher
        return after, watcher

    def _wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return False

    def _new_term(self, term: int | None) -> bool:
        s = self.recorder.latest
        return s is not None and s.term is not None and s.term > (term or 0) and s.holder_id is not None

    # ---- the faults --------------------------------------------------------------------

    def _standbys(self, leader: str | None) -> list[str]:
        return [n for n in self.cluster.nodes if n != leader]

    def _kill_leader(self, f: Fault) -> None:
        f.target = f.leader_before
        if f.target is None:
            return
        f.started_ms = now_ms()
        self.cluster.kill(f.target)
        f.stopped = [f.target]
        self._wait_for(lambda: self._new_term(f.term_before), self.failover_wait)
        self.cluster.start(f.target)

    def _kill_standby(self, f: Fault) -> None:
        f.target = choose(self._standbys(f.leader_before), f.params["pick"])
        f.started_ms = now_ms()
        self.cluster.kill(f.target)
        f.stopped = [f.target]
        time.sleep(0.5)
        self.cluster.start(f.target)

    def _kill_all_but_one(self, f: Fault) -> None:
        f.target = choose(self.cluster.nodes, f.params["pick"])  # the survivor
        f.stopped = [n for n in self.cluster.nodes if n != f.target]
        f.started_ms = now_ms()
        for node in f.stopped:
            self.cluster.kill(node)
        survivor = f.target

        def survivor_leads() -> bool:
            s = self.recorder.latest
            return s is not None and s.holder_id == survivor and (
                survivor == f.leader_before or self._new_term(f.term_before))
        self._wait_for(survivor_leads, self.failover_wait)
        for node in f.stopped:
            self.cluster.start(node)

    def _graceful_stop(self, f: Fault) -> None:
        f.target = f.leader_before
        if f.target is None:
            return
        f.started_ms = now_ms()
        self.cluster.terminate(f.target, timeout=3.0)
        f.stopped = [f.target]
        self.cluster.start(f.target)

    def _pause_leader(self, f: Fault) -> None:
        f.target = f.leader_before
        if f.target is None:
            return
        f.started_ms = now_ms()
        self.cluster.send(f.target, signal.SIGSTOP)
        try:
            time.sleep(f.params["hold_s"])
        finally:
            self.cluster.send(f.target, signal.SIGCONT)
        f.ended_ms = now_ms()
        time.sleep(0.5)

    def _partition_leader(self, f: Fault) -> None:
        f.target = f.leader_before
        if f.target is None:
            return
        f.started_ms = now_ms()
        self.proxies.blackhole(f.target)
        try:
            time.sleep(f.params["hold_s"])
        finally:
            self.proxies.heal(f.target, cut=f.params["heal"] == "cut")
        f.ended_ms = now_ms()
        time.sleep(0.5)

    def _redis_restart(self, f: Fault) -> None:
        f.started_ms = now_ms()
        if f.params["how"] == "kill":
            self.server.process.kill()
            self.server.process.wait()
        else:
            self.server.stop()
        f.params["lifted_ms"] = now_ms()
        self.server.start_again()  # waits for PING
        f.ended_ms = now_ms()

    def _redis_outage(self, f: Fault) -> None:
        f.started_ms = now_ms()
        self.server.stop()
        time.sleep(f.params["down_s"])
        f.params["lifted_ms"] = now_ms()
        self.server.start_again()
        f.ended_ms = now_ms()

    def _slow_redis(self, f: Fault) -> None:
        one_way = f.params["one_way_s"]
        f.started_ms = now_ms()
        try:
            for node in self.cluster.nodes:
                self.proxies.delay(node, one_way)
            time.sleep(f.params["hold_s"])
        finally:
            f.params["lifted_ms"] = now_ms()
            for node in self.cluster.nodes:
                self.proxies.heal(node)
        time.sleep(one_way)  # what was already in flight still arrives late
        f.ended_ms = now_ms()

    def _clock_jump(self, f: Fault) -> None:
        leader = f.leader_before
        f.target = leader if f.params["leader"] and leader else choose(
            self._standbys(leader), f.params["pick"])
        f.started_ms = now_ms()
        try:
            self.cluster.set_clock(f.target, f.params["offset_s"])
            time.sleep(f.params["hold_s"])
        finally:
            self.cluster.set_clock(f.target, 0)  # and back again: the second jump
        f.ended_ms = now_ms()
        time.sleep(self.o.lease_ttl)
