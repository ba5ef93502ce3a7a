"""The placement part's figures as report rows (figure, measured, target, verdict)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Row = tuple[str, str, str, str]


def _verdict(value: Any, ok: Callable[[Any], bool], note: str = "") -> str:
    if value is None:
        return "not measured"
    return ("met" if ok(value) else "MISSED") + (f" ({note})" if note else "")


def _balance(b: dict[str, Any]) -> str:
    return (f"{b['fewest']}-{b['most']} per node, {b['held']}/{b['leases']} held "
            f"(share {b['share']}: {b['floor']}-{b['ceiling']})")


def placement_rows(results: dict[str, Any]) -> list[Row]:
    """Real nodes placing many leases: balance, moves, re-home times, cost; empty if not run."""
    p = results.get("placement")
    if not p:
        return []
    start, steady, join, leave, crash = (p[k] for k in ("start", "steady", "join", "leave",
                                                        "crash"))
    size = f"{p['nodes']} real nodes x {p['leases']} leases (TTL {p['ttl_s']:g} s, renew " \
           f"{p['renew_interval_s']:g} s)"
    lag = steady["loop_lag_ms"]
    return [
        (f"{size}: balance after start", _balance(start["balance"]) +
         f" after {start['balanced_s']} s", "floor-ceiling",
         _verdict(start["balance"]["balanced"], bool)),
        (f"moves over {steady['window_s']} s of steady rounds",
         f"{steady['grants']} grants, {steady['leases_moved']} moved", "0",
         _verdict(steady["grants"], lambda x: x == 0)),
        ("round trips per node per renew interval (counted on each node's client)",
         f"{steady['round_trips_per_node_per_interval']} "
         f"({', '.join(f'{k} {v}' for k, v in steady['round_trips_by_kind_per_node_per_interval'].items())})",
         "3 (renew_many + 2 view pipelines)",
         _verdict(steady["round_trips_per_node_per_interval"], lambda x: abs(x - 3) < 0.1)),
        ("Redis CPU with them running (steady)",
         f"{steady['redis_cpu_percent']}% of a core ({steady['redis_cpu_ms_per_interval']} ms "
         "per renew interval)", "", ""),
        ("this process (every node's Python side) while steady",
         f"{steady['python_cpu_percent']}% of a core, loop lag p50 / p99 "
         f"{lag['p50_ms']} / {lag['p99_ms']} ms", "", "if near a core: Python sets the pace"),
        (f"a node joins: moves (its share {join['joiner_share'][0]}-{join['joiner_share'][1]})",
         f"{join['leases_moved']} moved, {join['moved_to_joiner']} to it, {join['grants']} grants",
         "its share", _verdict(join["moves_beyond_its_share"], lambda x: x == 0)),
        ("a node leaves (stop()): its leases held again",
         f"{leave['rehomed_ms']} ms after stop() for all {leave['leases_it_held']} "
         f"({leave['grants']} grants)", "milliseconds",
         _verdict(leave["rehomed_ms"], lambda x: x < 1000 * p["renew_interval_s"])),
        (f"a node crashes: its {crash['leases_it_held']} leases held again",
         f"{crash['rehomed_s']} s", f"<= TTL + renew = {crash['bound_s']:g} s",
         _verdict(crash["rehomed_s"], lambda x: bool(crash["within_bound"]))),
        *_beside_baseline(results, p),
    ]


def _beside_baseline(results: dict[str, Any], p: dict[str, Any]) -> list[Row]:
    """The many part's single-lease daemons at the same size and renew interval."""
    many = results.get("many_leases")
    if not many or (many["nodes"], many["leases"]) != (p["nodes"], p["leases"]):
        return []
    single = many["single_lease_daemons"]["redis_cpu_ms_per_round"]
    per_s = single / p["renew_interval_s"] / 10  # ms per interval -> % of a core
    return [(f"{p['leases']} single-lease daemons at the same renew interval (simulated, part "
             "many): Redis CPU", f"{round(per_s, 2)}% of a core", "",
             f"real nodes: {p['steady']['redis_cpu_percent']}%")]
