"""What a chaos run recorded: plain values, JSON in and out, so the checker is a pure function.

Times are integer milliseconds of one clock: Redis's (TIME) for everything Redis stamped, and
the harness's wall clock for when it injected and lifted faults. Redis and the harness run on
the same host and neither has its clock faked, so the two are the same clock.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# faults whose whole point is that the leader goes away (for a while or for good)
REMOVES_LEADER = ("kill_leader", "pause_leader", "partition_leader", "group_stop_leader",
                  "freeze_leader_host", "process_crash")
REDIS_ONLY = ("redis_restart", "redis_outage", "slow_redis", "redis_kill_everysec",
              "redis_restart_empty")
# the faults of issue 6 (the suite's mixed run injects these)
KINDS = ("kill_leader", "kill_standby", "kill_all_but_one", "graceful_stop", "pause_leader",
         "partition_leader", "redis_restart", "redis_outage", "slow_redis", "clock_jump",
         "process_crash")  # the last: issue 17, kill -9 of the daemon's pid only
# the faults of issues 11 (Redis's side) and 12 (a stopped process group, a frozen host)
REDIS_SIDE = ("redis_clock_step", "lost_write_failover", "redis_kill_everysec",
              "redis_restart_empty")
FROZEN = ("group_stop_leader", "freeze_leader_host")
ALL_KINDS = KINDS + REDIS_SIDE + FROZEN
TICK_GAP_MS = 250  # a child ticks every 20 ms: a longer silence splits its run in two


@dataclass
class RunSettings:
    """The settings one run used."""

    lease_ttl: float
    renew_interval: float
    heartbeat_interval: float
    renew_failure_threshold: int
    daemons: int
    redis: str = ""
    faketime: bool = False
    setup: str = "single"  # "single": one Redis; "sentinel": master + replica + Sentinel
    min_replicas_ack: int = 0
    redis_faketime: bool = False  # the Redis servers run under libfaketime
    kinds: list[str] = field(default_factory=list)  # the kinds this run could inject
    # many leases (issue 15): the registered leases (COORDINATOR_LEASES expanded); empty for
    # the single lease
    leases: list[str] = field(default_factory=list)


@dataclass
class Fault:
    """One injected fault: when it began and was lifted, whom it hit, who led before."""

    index: int
    kind: str
    started_ms: int
    # lifted: healed, resumed, Redis answering again (for Redis faults, params["lifted_ms"] is
    # when it was restarted or the delay removed); None for a kill
    ended_ms: int | None = None
    target: str | None = None
    leader_before: str | None = None
    term_before: int | None = None
    stopped: list[str] = field(default_factory=list)  # nodes this fault killed or stopped
    params: dict[str, Any] = field(default_factory=dict)
    settled_ms: int | None = None  # when the cluster was whole again with a leader; None: never


@dataclass
class ProbeWrite:
    """One fenced probe write as its daemon logged Redis's answer."""

    node_id: str
    incarnation: int
    term: int
    accepted: bool
    redis_now: int
    current_term: int | None = None
    seq: int = 0
    source: str = "probe"  # "probe": the daemon's fence probe; "child": its leader-only child
    lease: str | None = None  # many leases: the lease whose probe key it wrote


@dataclass
class Sample:
    """The lease and the probe record as one atomic read saw them, at Redis time ``at``.

    Only changes are kept; ``prev_at`` is when the previous read (still without this change)
    was made, so a change happened in ``(prev_at, at]``.
    """

    at: int
    prev_at: int | None
    holder_id: str | None
    term: int | None
    renewed_at: int | None
    probe: str | None
    instance_id: str | None = None
    server: int | None = None  # the port of the Redis server read (a master at the time)
    lease: str | None = None  # many leases: the lease read (and its probe key)


@dataclass
class ChildRun:
    """One leader-only child: when it ran (real wall-clock ms) and for which term.

    ``segments`` are the stretches in which it ticked without a gap of more than
    ``TICK_GAP_MS`` (a gap: it, or its whole host, was frozen or starved)."""

    node_id: str
    pid: int
    term: int
    started_ms: int
    segments: list[list[int]] = field(default_factory=list)
    stopped_by_term: bool = False  # it logged SIGTERM (else it was killed, or the run ended)


@dataclass
class Tenure:
    """Many leases: one stretch in which a node's daemon of one lease was leader (may
    schedule), from its ``state.changed`` log lines.

    ``started_ms`` / ``ended_ms`` are the daemon's own log stamps (its wall clock, which a
    ``clock_jump`` moves: the checker puts them back); ``ended_ms`` is None when the
    process ended while leading (killed: the incarnation's end is the tenure's end)."""

    node_id: str
    incarnation: int
    lease: str
    term: int | None
    started_ms: int
    ended_ms: int | None = None
    reason: str = ""  # why it ended, as logged
    # the lines of the log they came from: a process logs in real-time order, which is what
    # tells a stamp of a clock jumped back from a real one of the same value
    started_line: int = 0
    ended_line: int | None = None


@dataclass
class Incarnation:
    """One ``coordinator run`` process of a node."""

    node_id: str
    number: int
    started_ms: int
    ready_ms: int | None = None  # when it logged daemon.started; None: never
    ended_ms: int | None = None
    exit_code: int | None = None
    stopped_by: str | None = None  # "kill", "term" (a fault or the run's end), None: itself
    errors: list[str] = field(default_factory=list)  # error-level log events


@dataclass
class Recording:
    """Everything one run saw."""

    seed: int
    settings: RunSettings
    started_ms: int = 0
    ended_ms: int = 0
    faults: list[Fault] = field(default_factory=list)
    writes: list[ProbeWrite] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    channel: list[dict[str, Any]] = field(default_factory=list)  # as a subscriber received them
    history: list[dict[str, Any]] = field(default_factory=list)  # the history stream, in order
    incarnations: list[Incarnation] = field(default_factory=list)
    watcher_final: list[Any] | None = None  # [holder_id, term] as `coordinator watch` last saw
    redis_final: list[Any] | None = None  # [holder_id, term] in Redis at the same moment
    notes: list[str] = field(default_factory=list)
    children: list[ChildRun] = field(default_factory=list)
    # the Redis servers' clock steps: [real start ms, real end ms, offset ms]; Redis's stamps
    # in that stretch are offset (the checker takes the offset off again)
    redis_clock: list[list[int]] = field(default_factory=list)
    # digests of the product's code (coordinator/, lua/) at the run's start and end: a daemon
    # restarted after the checkout changed runs other code than the ones started before
    code_digests: list[str] = field(default_factory=list)
    # many leases: every lease tenure the daemons logged; Redis's final holder and term of
    # each lease; and the watched lease (``coordinator watch`` follows one lease)
    tenures: list[Tenure] = field(default_factory=list)
    leases_final: dict[str, list[Any] | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recording:
        d = dict(data)
        d["settings"] = RunSettings(**d["settings"])
        d["faults"] = [Fault(**f) for f in d.get("faults", [])]
        d["writes"] = [ProbeWrite(**w) for w in d.get("writes", [])]
        d["samples"] = [Sample(**s) for s in d.get("samples", [])]
        d["incarnations"] = [Incarnation(**i) for i in d.get("incarnations", [])]
        d["children"] = [ChildRun(**c) for c in d.get("children", [])]
        d["tenures"] = [Tenure(**t) for t in d.get("tenures", [])]
        return cls(**d)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path) -> Recording:
        return cls.from_json(json.loads(path.read_text()))
