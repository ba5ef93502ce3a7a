"""Where every lease should be, as a pure function of what every node reads in Redis.

No Redis, no clock: the registered leases, the live nodes (capacity, selector), who holds
each lease and each lease's preferred holders go in; a plan and one node's actions come out.
Every node computes the same plan from the same inputs (nothing depends on input order or on
which node computes it), so the nodes need no coordination beyond reading the same keys.

The rules, in the order they are applied:

1. Classes. Leases are grouped by the set of live nodes eligible for them (their selectors);
   with no selectors there is one class. Each class is placed on its own, so a node's
   floor/ceiling guarantee holds per class (a node in k classes is within k of its whole
   share: see docs/leases.md).
2. Targets. In a class of n leases, a node of capacity c out of the class's total C gets
   floor(n*c/C); the n - sum(floor) leases left over go one each to nodes with a fractional
   share, first to nodes that already hold more than their floor (so a balanced assignment
   keeps its targets: calm), then to the larger fractional part, then by a hash of the node
   id and the class (deterministic, and not always the same node across classes).
3. Affinity. A lease goes to the first of its preferred holders that is live, eligible and
   below its target; passes go rank by rank (first choices before second ones), and within a
   pass a node claims the preferred leases it already holds before others. Affinity never
   moves a node past its target: it is honoured inside the share bounds, never against them.
4. Keep. A lease stays with its live, eligible holder while that holder is below target.
5. Fill. What is left (free leases, leases of dead nodes, surplus) goes to the nodes furthest
   below target, one at a time, in lease-name order.

A node then acquires the leases planned for it that no live node holds, hands each lease it
holds that is planned for another node to that node, and releases leases no longer
registered. A lease no live node is eligible for is ``unplaced``: its holder keeps it.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from coordinator.errors import InvalidArgumentError
from coordinator.leases.names import ALL_LEASES, LeaseSelector


@dataclass(frozen=True)
class Node:
    """A live node as its controller record would describe it."""

    node_id: str
    capacity: int = 1
    selector: LeaseSelector = ALL_LEASES


@dataclass(frozen=True)
class Plan:
    """Where every placeable lease should be, and how many leases each node should hold."""

    assignment: Mapping[str, str]  # lease -> node
    targets: Mapping[str, int]  # node -> leases it should hold (all classes together)
    unplaced: frozenset[str]  # registered leases no live node is eligible for


@dataclass(frozen=True)
class Actions:
    """What one node should do this renew interval."""

    acquire: tuple[str, ...] = ()  # planned for it, held by no live node
    hand_over: tuple[tuple[str, str], ...] = ()  # (lease, node) pairs: held, planned elsewhere
    release: tuple[str, ...] = ()  # held, but no longer registered

    @property
    def none(self) -> bool:
        """Whether there is nothing to do."""
        return not (self.acquire or self.hand_over or self.release)


def plan_placement(
    leases: Collection[str], nodes: Iterable[Node], holders: Mapping[str, str],
    preferred: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """The plan every node computes from the same view (see the module docstring)."""
    live = _checked_nodes(nodes)
    preferred = preferred or {}
    assignment: dict[str, str] = {}
    targets = dict.fromkeys(live, 0)
    classes, unplaced = _classes(leases, live)
    for members, class_leases in classes.items():
        class_targets = _class_targets(class_leases, [live[m] for m in members], holders)
        for node_id, target in class_targets.items():
            targets[node_id] += target
        assignment.update(_assign_class(class_leases, class_targets, holders, preferred))
    return Plan(assignment=assignment, targets=targets, unplaced=frozenset(unplaced))


def actions_from_plan(
    node_id: str, plan: Plan, leases: Collection[str], holders: Mapping[str, str],
) -> Actions:
    """What ``node_id`` should do under ``plan``; the node need not be live (a node leaving
    computes the plan without itself and hands every lease over)."""
    registered = set(leases)
    acquire = [lease for lease, to in plan.assignment.items()
               if to == node_id and holders.get(lease) not in plan.targets]
    mine = sorted(lease for lease, holder in holders.items() if holder == node_id)
    hand_over = [(lease, plan.assignment[lease]) for lease in mine
                 if lease in plan.assignment and plan.assignment[lease] != node_id]
    release = [lease for lease in mine if lease not in registered]
    return Actions(acquire=tuple(sorted(acquire)), hand_over=tuple(hand_over), release=tuple(release))


def actions_for(
    node_id: str, leases: Collection[str], nodes: Iterable[Node], holders: Mapping[str, str],
    preferred: Mapping[str, Sequence[str]] | None = None,
) -> Actions:
    """What ``node_id`` should do, given what it read (the plan computed on the way)."""
    return actions_from_plan(node_id, plan_placement(leases, nodes, holders, preferred), leases, holders)


def _checked_nodes(nodes: Iterable[Node]) -> dict[str, Node]:
    live: dict[str, Node] = {}
    for node in sorted(nodes, key=lambda n: n.node_id):
        if node.node_id in live:
            raise InvalidArgumentError(f"node {node.node_id!r} is listed twice")
        if isinstance(node.capacity, bool) or not isinstance(node.capacity, int) or node.capacity < 1:
            raise InvalidArgumentError(f"node {node.node_id!r}: capacity must be an integer >= 1, "
                                       f"got {node.capacity!r}")
        live[node.node_id] = node
    return live


def _classes(
    leases: Collection[str], live: Mapping[str, Node],
) -> tuple[dict[tuple[str, ...], list[str]], list[str]]:
    """Leases grouped by the (sorted) ids of the live nodes eligible for them, and the
    leases nobody live is eligible for."""
    classes: dict[tuple[str, ...], list[str]] = {}
    unplaced: list[str] = []
    # nodes share a few selectors: match each lease against each distinct selector once
    by_selector: dict[LeaseSelector, list[str]] = {}
    for node_id, node in live.items():
        by_selector.setdefault(node.selector, []).append(node_id)
    selectors = list(by_selector)
    members_of: dict[tuple[int, ...], tuple[str, ...]] = {}
    for lease in sorted(set(leases)):
        matched = tuple(i for i, selector in enumerate(selectors) if selector.matches(lease))
        if matched not in members_of:
            members_of[matched] = tuple(sorted(n for i in matched for n in by_selector[selectors[i]]))
        members = members_of[matched]
        if members:
            classes.setdefault(members, []).append(lease)
        else:
            unplaced.append(lease)
    return classes, unplaced


def _class_targets(
    class_leases: Sequence[str], members: Sequence[Node], holders: Mapping[str, str],
) -> dict[str, int]:
    """floor or ceiling of each member's capacity share of the class's leases; the ceilings
    go first to the members already holding more than their floor."""
    count, total = len(class_leases), sum(m.capacity for m in members)
    held = dict.fromkeys((m.node_id for m in members), 0)
    for lease in class_leases:
        holder = holders.get(lease)
        if holder in held:
            held[holder] += 1
    targets = {m.node_id: count * m.capacity // total for m in members}
    remainders = {m.node_id: count * m.capacity % total for m in members}
    spare = count - sum(targets.values())
    salt = class_leases[0]

    def order(node_id: str) -> tuple[bool, int, bytes]:
        return (held[node_id] <= targets[node_id], -remainders[node_id], _tiebreak(salt, node_id))

    for node_id in sorted((n for n, r in remainders.items() if r), key=order)[:spare]:
        targets[node_id] += 1
    return targets


def _tiebreak(salt: str, node_id: str) -> bytes:
    # a stable hash (Python's hash() differs per process), so every node breaks ties alike
    return hashlib.blake2b(f"{salt}\0{node_id}".encode(), digest_size=8).digest()


def _assign_class(
    class_leases: Sequence[str], targets: Mapping[str, int], holders: Mapping[str, str],
    preferred: Mapping[str, Sequence[str]],
) -> dict[str, str]:
    assignment: dict[str, str] = {}
    counts = dict.fromkeys(targets, 0)

    def give(lease: str, node_id: str) -> None:
        assignment[lease] = node_id
        counts[node_id] += 1

    choices = {lease: [p for p in preferred.get(lease, ()) if p in targets] for lease in class_leases}
    for rank in range(max((len(c) for c in choices.values()), default=0)):
        wanted = sorted((holders.get(lease) != c[rank], lease, c[rank])
                        for lease, c in choices.items() if len(c) > rank and lease not in assignment)
        for _, lease, node_id in wanted:
            if lease not in assignment and counts[node_id] < targets[node_id]:
                give(lease, node_id)
    for lease in class_leases:
        holder = holders.get(lease)
        if lease not in assignment and holder in counts and counts[holder] < targets[holder]:
            give(lease, holder)
    below = [(counts[n] - t, n) for n, t in targets.items() if counts[n] < t]
    heapq.heapify(below)
    for lease in class_leases:
        if lease in assignment:
            continue
        missing, node_id = heapq.heappop(below)
        give(lease, node_id)
        if missing + 1 < 0:
            heapq.heappush(below, (missing + 1, node_id))
    return assignment
