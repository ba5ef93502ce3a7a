"""The figures of a bench run beside the product's targets, each with a verdict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coordinator.bench.options import FAILOVER_RENEW, FAILOVER_TTL
from coordinator.bench.placement_report import placement_rows

Row = tuple[str, str, str, str]  # figure, measured, target, verdict


def lookup(results: dict[str, Any], *path: str) -> Any:
    """``results[path[0]][path[1]]...``, or None where a part was not run."""
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _ms(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f} ms"


def pct(summary: dict[str, Any] | None, digits: int = 3) -> str:
    """``p50 / p99 ms (n=...)`` of a summary."""
    if not summary or not summary.get("n"):
        return "—"
    return (f"{summary['p50_ms']:.{digits}f} / {summary['p99_ms']:.{digits}f} ms"
            f" (n={summary['n']})")


def _verdict(value: Any, ok: Callable[[Any], bool], note: str = "") -> str:
    if value is None:
        return "not measured"
    return ("met" if ok(value) else "MISSED") + (f" ({note})" if note else "")


def rows(results: dict[str, Any]) -> list[Row]:
    """Every figure of ``results`` that was measured, with its target and verdict."""
    out: list[Row] = []
    lat = results.get("latency")
    if lat:
        r = lat["renew_to_bare_p50_ratio"]
        out += [
            ("renew latency p50 / p99", pct(lat["renew"]), "1 round trip", "met (1 EVALSHA)"),
            ("bare EVALSHA `return 1` p50 / p99", pct(lat["bare_evalsha"]), "", ""),
            ("renew / bare EVALSHA, ratio of medians", f"{r}x", "<= 1.2x",
             _verdict(r, lambda v: v <= 1.2)),
            ("acquire latency p50 / p99", pct(lat["acquire"]), "1 round trip",
             f"met (1 EVALSHA; {lat['acquire_to_bare_p50_ratio']}x bare)"),
            ("release latency p50 / p99", pct(lat["release"]), "",
             f"{lat['release_to_bare_p50_ratio']}x bare"),
        ]
    cpu = results.get("redis_cpu") or {}
    if cpu.get("renew"):
        v = cpu["renew"]["usec_per_call"]
        out.append(("Redis CPU per renew", f"{v} µs", "< 10 µs", _verdict(v, lambda x: x < 10)))
        out.append(("Redis CPU per bare EVALSHA", f"{cpu['bare_evalsha']['usec_per_call']} µs",
                    "", ""))
        out.append(("Redis CPU per plain lease script (TIME, HGET, HSET, INCR, PEXPIRE)",
                    f"{cpu['reference_lease_like']['usec_per_call']} µs", "",
                    "a yardstick to compare machines (5.8 µs where the targets were set)"))
    if cpu.get("heartbeat"):
        hb = cpu["heartbeat"]
        v = hb["usec_per_call"]
        out.append((f"Redis CPU per heartbeat ({hb['controllers']} registered)", f"{v} µs",
                    "< 10 µs", _verdict(v, lambda x: x < 10)))
    out += _scale_rows(results)
    out += _many_leases_rows(results)
    out += placement_rows(results)
    watch = results.get("watch") or {}
    for kind, label in (("pubsub", "bare asyncio subscriber"),
                        ("watcher", "coordinator watch()")):
        if kind in watch:
            v = watch[kind].get("p99_ms")
            out.append((f"tenure change seen by another process, {label}", pct(watch[kind]),
                        "p99 <= 1 ms", _verdict(v, lambda x: x <= 1.0)))
    out += _failover_rows(results)
    idle = results.get("idle")
    if idle:
        for role in ("leader", "standby"):
            cpu_pct, rss = idle[role]["cpu_percent"], idle[role]["rss_mb"]
            shown = "—" if cpu_pct is None else f"{cpu_pct}% of a core over {idle['window_s']} s"
            out.append((f"idle daemon ({role}, default settings) CPU", shown,
                        "< 0.5%", _verdict(cpu_pct, lambda x: x < 0.5,
                                           f"±{idle['resolution_percent']}%")))
            out.append((f"idle daemon ({role}) resident memory",
                        "—" if rss is None else f"{rss} MB", "< 60 MB",
                        _verdict(rss, lambda x: x < 60)))
    cleanup = results.get("cleanup")
    if cleanup:
        out.append(("keys left behind", str(cleanup["keys_left"]), "0",
                    _verdict(cleanup["keys_left"], lambda x: x == 0)))
    return out


def _scale_rows(results: dict[str, Any]) -> list[Row]:
    scale = results.get("scale")
    if not scale:
        return []
    load, status = scale["load"], scale["status"]
    n = load["controllers"]
    at_target = load["redis_cpu_percent_at_target"]
    return [
        (f"{n} controllers heartbeating 1/s: Redis CPU",
         f"{load['redis_cpu_percent']}% of a core at {load['achieved_beats_per_s']}/s "
         f"(→ {at_target}% at {load['target_beats_per_s']}/s)", "< 10% of a core",
         _verdict(at_target, lambda x: x < 10)),
        *_bare_load_rows(load),
        (f"status with {status['controllers']} controllers, in process",
         pct(status["inprocess"], 1), "< 250 ms",
         _verdict(lookup(status, "inprocess", "p50_ms"), lambda x: x < 250, "p50")),
        ("`coordinator status --json` command, wall time, no controllers",
         pct(status.get("cli_startup"), 1), "< 250 ms",
         _verdict(lookup(status, "cli_startup", "p50_ms"), lambda x: x < 250,
                  "p50, includes starting Python")),
        (f"`coordinator status --json` command, wall time, {status['controllers']} controllers",
         pct(status["cli"], 1), "< 250 ms", _verdict(lookup(status, "cli", "p50_ms"),
                                                    lambda x: x < 250,
                                                    "p50, includes starting Python")),
        ("SCAN/KEYS calls while reading status", str(status["scan_or_keys_calls"]), "0",
         _verdict(status["scan_or_keys_calls"], lambda x: x == 0, "range queries only")),
    ]


def _many_leases_rows(results: dict[str, Any]) -> list[Row]:
    """N nodes x M leases with renew_many against M single-lease daemons (simulated traffic)."""
    many = results.get("many_leases")
    if not many:
        return []
    n, m = many["nodes"], many["leases"]
    rm, single, big = many["renew_many"], many["single_lease_daemons"], many["one_call_of_all_leases"]
    at_default = "5s"
    return [
        (f"{n} nodes x {m} leases (simulated traffic): round trips per node per renew interval",
         f"{rm['round_trips_per_node_per_interval']}", "1",
         _verdict(rm["round_trips_per_node_per_interval"], lambda x: x == 1)),
        (f"{n} x {m}: Redis CPU per renew interval (renew_many, heartbeat riding along)",
         f"{rm['redis_cpu_ms_per_round']} ms ({rm['redis_cpu_percent_at_renew_interval'][at_default]}"
         f"% of a core at renew 5 s)", "", ""),
        (f"{m} single-lease daemons: Redis CPU per renew interval (renew + heartbeat each)",
         f"{single['redis_cpu_ms_per_round']} ms "
         f"({single['redis_cpu_percent_at_renew_interval'][at_default]}% at renew 5 s)", "",
         f"{many['cpu_ratio_renew_many_to_single']}x of it for renew_many"),
        ("Redis work per renewed lease: renew_many / single-lease daemon",
         f"{rm['redis_cpu_usec_per_lease']} / {single['redis_cpu_usec_per_lease']} µs CPU; "
         f"{rm['script_usec_per_lease']} / {single['script_usec_per_lease']} µs in scripts",
         "", ""),
        (f"one renew_many call of all {big['leases']} leases: script time",
         f"{big['script_ms']} ms ({big['script_usec_per_lease']} µs a lease)", "", ""),
    ]


def _bare_load_rows(load: dict[str, Any]) -> list[Row]:
    """The same rate of bare EVALSHA from the same workers, and the heartbeat's ratio to it."""
    bare = load.get("bare_evalsha")
    if not bare:
        return []
    return [
        ("same rate of bare EVALSHA `return 1`, same clients: Redis CPU",
         f"{bare['redis_cpu_percent']}% of a core at {bare['achieved_beats_per_s']}/s "
         f"(→ {bare['redis_cpu_percent_at_target']}% at {bare['target_beats_per_s']}/s)", "", ""),
        ("heartbeats / bare EVALSHA, Redis CPU at the same rate",
         f"{load['heartbeat_to_bare_cpu_ratio']}x", "<= 1.5x",
         _verdict(load["heartbeat_to_bare_cpu_ratio"], lambda x: x <= 1.5)),
    ]


def _process_crash_row(crash: dict[str, Any] | None) -> list[Row]:
    """kill -9 of the leading daemon's pid only: its guardian releases (issue's target: a new
    leader within 50 ms p99 of the kill); empty when the run had no such part."""
    if not crash or not crash.get("n"):
        return []
    missed = f"{crash['missed']} not released by the guardian" if crash.get("missed") else ""
    return [("process crash (kill -9 of the daemon only): new leader after the kill",
             pct(crash, 0) + f", max {_ms(crash['max_ms'], 0)}", "p99 <= 50 ms",
             _verdict(crash["p99_ms"], lambda x: x <= 50 and not crash.get("missed"), missed))]


def _failover_rows(results: dict[str, Any]) -> list[Row]:
    fo = results.get("failover")
    if not fo:
        return []
    graceful, kill, expiry = fo["graceful"], fo["crash_from_kill"], fo["crash_after_expiry"]
    few = "" if graceful["n"] >= 20 else f"only {graceful['n']} handovers"
    ttl_ms = FAILOVER_TTL * 1000
    return [
        (f"graceful handover (SIGTERM), TTL {FAILOVER_TTL:g} s / renew {FAILOVER_RENEW:g} s",
         pct(graceful, 0) + f", max {_ms(graceful['max_ms'], 0)}", "p99 <= 100 ms",
         _verdict(graceful["p99_ms"], lambda x: x <= 100, few)),
        *_process_crash_row(fo.get("process_crash")),
        ("host crash (daemon and guardian killed): new leader after the kill",
         pct(kill, 0) + f", max {_ms(kill['max_ms'], 0)}",
         f"<= {ttl_ms + 100:.0f} ms", _verdict(kill["max_ms"], lambda x: x <= ttl_ms + 100, "max")),
        ("host crash: new leader after the lease expired in Redis",
         pct(expiry, 0) + f", max {_ms(expiry['max_ms'], 0)}", "<= 100 ms",
         _verdict(expiry["max_ms"], lambda x: x <= 100, "max")),
    ]
