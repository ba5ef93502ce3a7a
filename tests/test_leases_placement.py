"""The placement plan (coordinator/leases/placement.py), pure: fairness by capacity, calm when
nothing changes, the fewest moves any fair placement could make on a join or a leave, the
same answer whatever the input order, affinity inside the share bounds, and convergence of a
simulated cluster from any start."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.errors import InvalidArgumentError
from coordinator.leases.names import LeaseSelector
from coordinator.leases.placement import Node, actions_for, actions_from_plan, plan_placement
from tests.leases_simulation import balanced, fewest_moves, settle, shares, simulate_round

POOL = [f"{prefix}-{i}" for prefix in ("eu", "us") for i in range(40)]


node_ids = st.lists(st.sampled_from([f"n{i}" for i in range(9)]), min_size=1, max_size=7, unique=True)
capacities = st.integers(min_value=1, max_value=4)
lease_sets = st.lists(st.sampled_from(POOL), max_size=60, unique=True)


@st.composite
def clusters(draw: st.DrawFn, *, selectors: bool = False) -> tuple[list[str], list[Node], dict[str, str]]:
    """Leases, live nodes, and any start: leases held by live nodes, dead ones or nobody,
    and leases held that are not registered."""
    ids = draw(node_ids)
    choice = st.sampled_from([LeaseSelector(), LeaseSelector(("eu-*",)), LeaseSelector(("us-*",))])
    nodes = [Node(n, draw(capacities), draw(choice) if selectors else LeaseSelector()) for n in ids]
    leases = draw(lease_sets)
    holder = st.sampled_from([*ids, "dead-1", "dead-2"])
    holders = draw(st.dictionaries(st.sampled_from(POOL), holder, max_size=60))
    return leases, nodes, holders


@given(clusters(), st.randoms(use_true_random=False))
def test_fairness_every_node_ends_at_the_floor_or_ceiling_of_its_share(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random,
) -> None:
    leases, nodes, holders = cluster
    settle(leases, nodes, holders, rng)
    held = Counter(holders.values())
    for node_id, (low, high) in shares(len(leases), nodes).items():
        assert low <= held[node_id] <= high, (node_id, held[node_id], low, high)
    live = {n.node_id for n in nodes}
    assert {lease for lease, holder in holders.items() if holder in live} == set(leases)
    # an unregistered lease a dead node held is nobody's to release: it runs out its TTL


@given(clusters(selectors=True), st.randoms(use_true_random=False))
def test_with_selectors_each_class_is_shared_by_capacity_and_no_one_holds_what_it_may_not(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random,
) -> None:
    leases, nodes, holders = cluster
    settle(leases, nodes, holders, rng)
    by_id = {n.node_id: n for n in nodes}
    classes: dict[tuple[str, ...], list[str]] = {}
    for lease in leases:
        members = tuple(n.node_id for n in nodes if n.selector.matches(lease))
        classes.setdefault(members, []).append(lease)
    for members, class_leases in classes.items():
        if not members:
            continue  # nobody may hold them: they stay where they were (unplaced)
        held = Counter(holders[lease] for lease in class_leases)
        assert set(held) <= set(members)
        for node_id, (low, high) in shares(len(class_leases), [by_id[m] for m in members]).items():
            assert low <= held[node_id] <= high


@given(clusters(), st.randoms(use_true_random=False))
def test_calm_a_balanced_assignment_gets_no_actions_at_all(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random,
) -> None:
    leases, nodes, _ = cluster
    holders = balanced(leases, nodes, rng)
    for node in nodes:
        assert actions_for(node.node_id, leases, nodes, holders).none


@given(clusters(selectors=True), st.randoms(use_true_random=False), st.data())
def test_calm_once_settled_nothing_moves_again_with_preferences_too(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random, data: st.DataObject,
) -> None:
    leases, nodes, holders = cluster
    ids = [n.node_id for n in nodes]
    preferred = data.draw(st.dictionaries(st.sampled_from(POOL), st.lists(st.sampled_from([*ids, "gone"]),
                                                                          max_size=3, unique=True)))
    settle(leases, nodes, holders, rng, preferred=preferred)
    for _ in range(5):
        assert simulate_round(leases, nodes, holders, rng, preferred=preferred) == 0
    for node_id in ids:
        assert actions_for(node_id, leases, nodes, holders, preferred).none


@given(clusters(), capacities, st.randoms(use_true_random=False))
def test_a_join_moves_the_fewest_leases_any_fair_placement_could(
    cluster: tuple[list[str], list[Node], dict[str, str]], capacity: int, rng: random.Random,
) -> None:
    leases, nodes, _ = cluster
    holders = balanced(leases, nodes, rng)
    joined = [*nodes, Node("newcomer", capacity)]
    fewest = fewest_moves(holders, leases, joined)
    rounds, moves = settle(leases, joined, holders, rng)
    assert moves == fewest
    assert rounds <= 1


@given(clusters(), st.randoms(use_true_random=False))
def test_from_any_fully_held_start_the_moves_are_the_fewest_possible(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random,
) -> None:
    leases, nodes, _ = cluster
    holders = {lease: rng.choice(nodes).node_id for lease in leases}
    fewest = fewest_moves(holders, leases, nodes)
    _, moves = settle(leases, nodes, holders, rng)
    assert moves == fewest


@given(clusters(), st.randoms(use_true_random=False))
def test_a_graceful_leave_moves_the_leavers_leases_and_only_what_fairness_forces(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random,
) -> None:
    leases, nodes, _ = cluster
    holders = balanced(leases, nodes, rng)
    leaver, *rest = nodes
    if not rest:
        return
    before = dict(holders)
    fewest = fewest_moves(before, leases, rest)
    # the leaver computes the plan without itself and hands every lease over in one go
    moves = simulate_round(leases, rest, holders, rng, leaving=[leaver.node_id])
    assert leaver.node_id not in holders.values()
    assert moves == fewest
    if fewest == Counter(before.values())[leaver.node_id]:
        # nothing forces more (the usual case: no share became a whole number above what its
        # node held): every other lease stays where it was
        assert all(holders[lease] == h for lease, h in before.items() if h != leaver.node_id)
    assert settle(leases, rest, holders, rng) == (0, 0)


@given(clusters(selectors=True), st.randoms(use_true_random=False), st.data())
def test_the_same_inputs_in_any_order_give_the_same_plan(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random, data: st.DataObject,
) -> None:
    leases, nodes, holders = cluster
    preferred = data.draw(st.dictionaries(st.sampled_from(POOL), st.lists(
        st.sampled_from([n.node_id for n in nodes]), max_size=2, unique=True)))
    plan = plan_placement(leases, nodes, holders, preferred)
    shuffled_holders = dict(rng.sample(sorted(holders.items()), len(holders)))
    other = plan_placement(set(rng.sample(leases, len(leases))), rng.sample(nodes, len(nodes)),
                           shuffled_holders, dict(rng.sample(sorted(preferred.items()), len(preferred))))
    assert other == plan
    for node in nodes:
        assert actions_from_plan(node.node_id, other, leases, shuffled_holders) == \
            actions_from_plan(node.node_id, plan, leases, holders)


@given(clusters(), st.randoms(use_true_random=False), st.data())
def test_affinity_each_node_gets_its_first_choice_leases_up_to_its_target(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random, data: st.DataObject,
) -> None:
    leases, nodes, holders = cluster
    ids = [n.node_id for n in nodes]
    chosen = data.draw(st.lists(st.sampled_from(leases), unique=True)) if leases else []
    preferred = {lease: data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=2, unique=True))
                 for lease in chosen}
    plan = plan_placement(leases, nodes, holders, preferred)
    for node_id in ids:
        first_choice = [lease for lease, p in preferred.items() if p[0] == node_id]
        got = [lease for lease in first_choice if plan.assignment[lease] == node_id]
        assert len(got) == min(len(first_choice), plan.targets[node_id])
        assert Counter(plan.assignment.values())[node_id] == plan.targets[node_id]


def test_affinity_claims_the_preferred_leases_a_node_already_holds_first() -> None:
    leases = ["a", "b", "c", "d"]
    nodes = [Node("p"), Node("q")]
    preferred = {lease: ["p"] for lease in leases}
    plan = plan_placement(leases, nodes, {"c": "p", "d": "p"}, preferred)
    assert sorted(lease for lease, n in plan.assignment.items() if n == "p") == ["c", "d"]


def test_affinity_swaps_to_honour_a_preference_then_stays() -> None:
    nodes = [Node("p"), Node("q")]
    preferred = {"a": ["p"]}
    holders = {"a": "q", "b": "p"}
    assert actions_for("q", ["a", "b"], nodes, holders, preferred).hand_over == (("a", "p"),)
    assert actions_for("p", ["a", "b"], nodes, holders, preferred).hand_over == (("b", "q"),)
    rounds, moves = settle(["a", "b"], nodes, holders, random.Random(1), preferred=preferred)
    assert holders == {"a": "p", "b": "q"} and (rounds, moves) == (1, 2)


@given(clusters(selectors=True), st.data())
def test_nodes_that_read_the_same_view_converge_in_one_round(
    cluster: tuple[list[str], list[Node], dict[str, str]], data: st.DataObject,
) -> None:
    leases, nodes, holders = cluster
    ids = [n.node_id for n in nodes]
    preferred = data.draw(st.dictionaries(st.sampled_from(POOL), st.lists(st.sampled_from(ids), max_size=3,
                                                                          unique=True)))
    plan = plan_placement(leases, nodes, holders, preferred)
    after = dict(holders)  # dead nodes' leases are taken as expired
    for node_id in sorted(set(ids) | set(holders.values())):
        actions = actions_from_plan(node_id, plan, leases, holders)
        after.update(dict.fromkeys(actions.acquire, node_id))
        after.update(dict(actions.hand_over))
        for lease in actions.release:
            del after[lease]
    assert all(after[lease] == node_id for lease, node_id in plan.assignment.items())
    for node_id in ids:
        assert actions_for(node_id, leases, nodes, after, preferred).none


@settings(max_examples=200)
@given(clusters(selectors=True), st.randoms(use_true_random=False), st.data())
def test_convergence_when_each_node_reads_the_state_the_previous_one_left(
    cluster: tuple[list[str], list[Node], dict[str, str]], rng: random.Random, data: st.DataObject,
) -> None:
    # the harder model: views differ within a round; measured at most 3 rounds (1,500 random
    # clusters of up to 12 nodes and 200 leases, with preferences), never an oscillation
    leases, nodes, holders = cluster
    preferred = data.draw(st.dictionaries(st.sampled_from(POOL), st.lists(
        st.sampled_from([n.node_id for n in nodes]), max_size=3, unique=True)))
    rounds, _ = settle(leases, nodes, holders, rng, preferred=preferred, limit=3)
    assert rounds <= 3


def test_a_crashed_nodes_leases_are_taken_in_the_round_after_they_expire() -> None:
    rng = random.Random(7)
    leases = [f"shard-{i}" for i in range(30)]
    nodes = [Node(f"n{i}") for i in range(3)]
    holders = balanced(leases, nodes, rng)
    crashed, survivors = nodes[0], nodes[1:]
    orphans = {lease for lease, h in holders.items() if h == crashed.node_id}
    # before the TTL runs out the survivors try and fail (acquire answers "held")
    simulate_round(leases, survivors, holders, rng, expired=False)
    assert {lease for lease, h in holders.items() if h == crashed.node_id} == orphans
    simulate_round(leases, survivors, holders, rng, expired=True)
    assert Counter(holders.values()) == {"n1": 15, "n2": 15}
    assert set(holders) == set(leases)


def test_ten_nodes_a_thousand_leases_join_leave_and_a_long_steady_run() -> None:
    rng = random.Random(15)
    leases = [f"shard-{i}" for i in range(1000)]
    nodes = [Node(f"n{i}") for i in range(10)]
    holders: dict[str, str] = {}
    assert settle(leases, nodes, holders, rng) == (1, 0)  # all free: acquired, none moved
    assert sorted(Counter(holders.values()).values()) == [100] * 10
    assert sum(simulate_round(leases, nodes, holders, rng) for _ in range(20)) == 0
    joined = [*nodes, Node("n10")]
    rounds, moves = settle(leases, joined, holders, rng)
    assert (rounds, moves) == (1, 90)  # 1000/11 = 90.9: the newcomer's floor, nothing else
    held = Counter(holders.values())
    leaver_held = held["n3"]
    rest = [n for n in joined if n.node_id != "n3"]
    assert simulate_round(leases, rest, holders, rng, leaving=["n3"]) == leaver_held == 91
    assert sorted(Counter(holders.values()).values()) == [100] * 10


def test_capacity_weights_the_share() -> None:
    plan = plan_placement([f"s{i}" for i in range(12)], [Node("big", 3), Node("small", 1)], {})
    assert plan.targets == {"big": 9, "small": 3}
    plan = plan_placement([f"s{i}" for i in range(10)], [Node("big", 3), Node("small", 1)], {})
    assert plan.targets["big"] in (7, 8) and plan.targets["small"] in (2, 3)  # 7.5 and 2.5
    assert sum(plan.targets.values()) == 10


def test_a_lease_nobody_may_hold_stays_put_and_an_unregistered_one_is_released() -> None:
    nodes = [Node("eu", selector=LeaseSelector(("eu-*",)))]
    holders = {"us-1": "eu", "gone": "eu"}
    plan = plan_placement(["us-1", "eu-1"], nodes, holders)
    assert plan.unplaced == {"us-1"}
    actions = actions_from_plan("eu", plan, ["us-1", "eu-1"], holders)
    assert actions.acquire == ("eu-1",) and actions.release == ("gone",) and not actions.hand_over


def test_a_node_that_is_not_live_acquires_nothing_and_hands_everything_over() -> None:
    actions = actions_for("leaving", ["a", "b"], [Node("other")], {"a": "leaving"})
    assert actions.acquire == () and actions.hand_over == (("a", "other"),)


def test_no_nodes_no_plan() -> None:
    plan = plan_placement(["a"], [], {"a": "x"})
    assert plan.assignment == {} and plan.unplaced == {"a"}


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5])
def test_a_capacity_below_one_or_not_an_integer_is_refused(capacity: object) -> None:
    with pytest.raises(InvalidArgumentError, match="capacity"):
        plan_placement(["a"], [Node("n", capacity)], {})  # type: ignore[arg-type]


def test_a_node_listed_twice_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="listed twice"):
        plan_placement(["a"], [Node("n"), Node("n", 2)], {})


def test_the_join_bound_is_the_ceiling_not_more() -> None:
    # an uneven case: 7 leases on 3 nodes, a 4th joins: its share is 1.75
    leases = [f"s{i}" for i in range(7)]
    nodes = [Node("a"), Node("b"), Node("c")]
    holders = balanced(leases, nodes, random.Random(3))
    _, moves = settle(leases, [*nodes, Node("d")], holders, random.Random(3))
    assert 1 <= moves <= math.ceil(7 / 4)
