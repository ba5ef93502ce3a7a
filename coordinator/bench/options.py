"""What a bench run measures and how much: the parts, their sizes, and the --quick preset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from coordinator.errors import InvalidArgumentError

PARTS = ("latency", "cpu", "scale", "many", "placement", "watch", "failover", "idle", "peers")
DEFAULT_PARTS = PARTS[:-1]  # peers only on request: they need extra packages and take minutes

# the failover settings of the targets, used by our daemons and the matched peers
FAILOVER_TTL = 2.0
FAILOVER_RENEW = 0.5


@dataclass(frozen=True)
class BenchOptions:
    """Sizes of every part; ``quick()`` shrinks them to a smoke run of seconds."""

    parts: tuple[str, ...] = DEFAULT_PARTS
    pairs: int = 2000  # renew/bare EVALSHA pairs (acquire pairs are a quarter)
    cpu_calls: int = 2000  # calls per INFO commandstats window
    controllers: int = 10_000  # registered controllers for heartbeat cost and status
    scale_seconds: float = 3.0  # how long the simulated controllers heartbeat
    status_runs: int = 3  # `coordinator status --json` processes (in-process: 3x as many)
    watch_events: int = 200  # tenure changes per subscriber kind
    handovers: int = 20  # graceful handovers between real daemons
    crashes: int = 3  # kill -9 of the leading daemon
    idle_seconds: float = 5.0  # shortest window for the idle daemon's CPU
    peer_handovers: int = 5  # per peer and variant
    peer_crashes: int = 3  # per peer at matched settings (one at defaults)
    peer_crash_cap: float = 35.0  # longest wait for a peer at defaults to fail over
    many_nodes: int = 100  # simulated many-lease nodes (issue 15's example: 100 x 1,000)
    many_leases: int = 1000  # leases shared among them (and as many single-lease daemons)
    many_rounds: int = 10  # renew intervals' traffic priced each way
    placement_nodes: int = 20  # real LeaseNodes in this process (part placement)
    placement_leases: int = 200  # leases placed among them
    placement_ttl: float = 3.0  # their lease TTL (s): a crash is re-homed within TTL + renew
    placement_renew: float = 0.5  # their renew interval (s): one round each per interval
    placement_steady: float = 5.0  # seconds of the steady stretch (moves, CPU, round trips)

    def __post_init__(self) -> None:
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise InvalidArgumentError(
                f"unknown bench part(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(PARTS)}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "parts" and not value > 0:
                raise InvalidArgumentError(f"--{field.name.replace('_', '-')} must be > 0, "
                                           f"got {value!r}")

        if self.placement_renew > self.placement_ttl / 3:
            raise InvalidArgumentError(
                f"--placement-renew must be at most a third of --placement-ttl, got "
                f"{self.placement_renew:g} and {self.placement_ttl:g}")

    def quick(self) -> BenchOptions:
        """The same parts, sized for a smoke run of a few seconds."""
        return dataclasses.replace(
            self, pairs=200, cpu_calls=200, controllers=500, scale_seconds=0.5, status_runs=1,
            watch_events=20, handovers=2, crashes=1, idle_seconds=1.0, peer_handovers=2,
            peer_crashes=1, peer_crash_cap=5.0, many_nodes=10, many_leases=100,
            many_rounds=2, placement_nodes=4, placement_leases=24, placement_ttl=1.5,
            placement_renew=0.25, placement_steady=1.0)

    def runs(self, part: str) -> bool:
        """Whether ``part`` is selected."""
        return part in self.parts
