"""The side-by-side table: our failover and renew cost beside each peer's, per variant."""

from __future__ import annotations

from typing import Any

from coordinator.bench.report import lookup


def _triple(summary: dict[str, Any] | None) -> str:
    """``min / median / max`` in ms, or why there is none."""
    if not summary:
        return "—"
    if summary.get("error"):
        return "error: " + str(summary["error"])
    if not summary.get("n"):
        return "never" if summary.get("missed") else "—"
    text = f"{summary['min_ms']:.0f} / {summary['p50_ms']:.0f} / {summary['max_ms']:.0f} ms"
    return text + (f" ({summary['missed']} never)" if summary.get("missed") else "")


def peer_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per peer and variant: crash and graceful failover, renew cost."""
    out: list[tuple[str, ...]] = []
    fo = results.get("failover")
    lat, cpu = results.get("latency"), lookup(results, "redis_cpu", "renew", "usec_per_call")
    if fo:
        out.append(("coordinator", "TTL 2 s, renew 0.5 s", _triple(fo["crash_from_kill"]),
                    _triple(fo["crash_after_expiry"]), _triple(fo["graceful"]),
                    f"{lat['renew_to_bare_p50_ratio']}x, 1 RTT" if lat else "—",
                    f"{cpu} µs" if cpu is not None else "—"))
    for name, peer in (results.get("peers") or {}).items():
        if not peer.get("installed"):
            out.append((name, "not measured", peer.get("error", ""), "", "", "", ""))
            continue
        cost = peer.get("renew_cost") or {}
        ratio = (f"{cost['renew_to_bare_p50_ratio']}x, {cost['round_trips']} RTT"
                 if "renew_to_bare_p50_ratio" in cost else cost.get("error", "—"))
        usec = f"{cost['redis_usec_per_renew']} µs" if "redis_usec_per_renew" in cost else "—"
        for variant, figures in peer.get("variants", {}).items():
            if "error" in figures:
                out.append((name, variant, "error: " + figures["error"], "", "", "", ""))
                continue
            crash = _triple(figures["crash_from_kill"])
            if figures.get("lock_has_no_ttl") and not figures["crash_from_kill"].get("n"):
                crash = (f"never (the lock has no TTL; none within "
                         f"{min(figures['crash_wait_cap_s'], 3.0):g} s)")
            elif not figures["crash_from_kill"].get("n"):
                crash = f"none within {figures['crash_wait_cap_s']:g} s"
            out.append((name, variant, crash,
                        _triple(figures["crash_after_expiry"]), _triple(figures["graceful"]),
                        ratio if variant == "matched" else "",
                        usec if variant == "matched" else ""))
    return out


PEER_HEADER = ("election", "settings", "kill -9 → new leader (min / median / max)",
               "… after the lock expired", "graceful release → new leader",
               "renew vs bare EVALSHA", "Redis CPU per renew")


def peer_settings(results: dict[str, Any]) -> list[str]:
    """One line per peer and variant saying what its settings were."""
    return [f"{name}, {variant}: {text}"
            for name, peer in (results.get("peers") or {}).items()
            for variant, text in (peer.get("settings") or {}).items()]
