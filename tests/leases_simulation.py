"""A simulated cluster for the placement tests: renew intervals in which every node does what
its plan says, and the figures a fair placement is judged by (pure: no Redis, no clock)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from coordinator.leases.placement import Node, actions_for


def simulate_round(
    leases: Sequence[str], nodes: Sequence[Node], holders: dict[str, str], rng: random.Random,
    *, preferred: Mapping[str, Sequence[str]] | None = None, expired: bool = True,
    leaving: Sequence[str] = (),
) -> int:
    """One renew interval of a cluster: every live node (in a random order, each reading the
    state the previous ones left) does what its plan says; ``holders`` is updated in place.
    An acquire of a lease a dead node holds succeeds only once it has ``expired``; a handover
    hands the lease over at once (the reserved handover). Returns how many leases moved from
    one holder to another."""
    running = {n.node_id for n in nodes} | set(leaving)  # a leaver still holds its leases
    moves = 0
    for node_id in rng.sample(sorted(running), len(running)):
        actions = actions_for(node_id, leases, nodes, holders, preferred)
        for lease in actions.acquire:
            if lease not in holders or (expired and holders[lease] not in running):
                holders[lease] = node_id
        for lease, to in actions.hand_over:
            holders[lease] = to
            moves += 1
        for lease in actions.release:
            del holders[lease]
    return moves


def settle(leases: Sequence[str], nodes: Sequence[Node], holders: dict[str, str], rng: random.Random,
           *, preferred: Mapping[str, Sequence[str]] | None = None, limit: int = 10) -> tuple[int, int]:
    """Rounds until a round changes nothing (that quiet round not counted), and the moves."""
    moves = 0
    for rounds in range(limit + 1):
        before = dict(holders)
        moves += simulate_round(leases, nodes, holders, rng, preferred=preferred)
        if holders == before:
            return rounds, moves
    raise AssertionError(f"no quiet round after {limit} rounds: it oscillates")


def shares(count: int, nodes: Sequence[Node]) -> dict[str, tuple[int, int]]:
    """floor and ceiling of each node's capacity share of ``count`` leases."""
    total = sum(n.capacity for n in nodes)
    return {n.node_id: (count * n.capacity // total, -(-count * n.capacity // total)) for n in nodes}


def balanced(leases: Sequence[str], nodes: Sequence[Node], rng: random.Random) -> dict[str, str]:
    """Some assignment in which every node holds the floor or ceiling of its share (built
    here, independently of the plan)."""
    bounds = shares(len(leases), nodes)
    counts = {n: low for n, (low, _) in bounds.items()}
    spare = len(leases) - sum(counts.values())
    for node_id in rng.sample([n for n, (low, high) in bounds.items() if high > low], spare):
        counts[node_id] += 1
    slots = [n for n, c in counts.items() for _ in range(c)]
    rng.shuffle(slots)
    return dict(zip(leases, slots, strict=True))


def fewest_moves(holders: Mapping[str, str], leases: Sequence[str], nodes: Sequence[Node]) -> int:
    """The fewest leases any placement must move to bring every node (all holding live,
    registered leases) to the floor or ceiling of its share: the larger of what must leave
    nodes above their ceiling and what must reach nodes below their floor."""
    held = Counter(holders[lease] for lease in leases)
    bounds = shares(len(leases), nodes)
    gone = sum(count for n, count in held.items() if n not in bounds)  # a leaver's ceiling is 0
    above = gone + sum(max(0, held[n] - high) for n, (_, high) in bounds.items())
    below = sum(max(0, low - held[n]) for n, (low, _) in bounds.items())
    return max(above, below)
