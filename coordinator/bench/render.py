"""A bench run rendered: an aligned text table for a terminal, markdown for the docs."""

from __future__ import annotations

from typing import Any

from coordinator.bench.options import FAILOVER_RENEW, FAILOVER_TTL
from coordinator.bench.peer_table import PEER_HEADER, peer_rows, peer_settings
from coordinator.bench.report import rows

REGENERATE = "coordinator bench --peers --markdown > docs/benchmarks.md"


def text_table(results: dict[str, Any]) -> str:
    """The figures as an aligned plain-text table, then the peers, then the machine."""
    lines = [_aligned([("figure", "measured", "target", "verdict"), *rows(results)])]
    peers = peer_rows(results)
    if results.get("peers") is not None and peers:
        lines += ["", "side by side:", _aligned([PEER_HEADER, *peers]),
                  *("  " + line for line in peer_settings(results))]
    lines += ["", _machine_line(results)]
    return "\n".join(lines)


def _aligned(table: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)


def _machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    return (f"{m['nproc']} cores ({m['cpu_model']}), Redis {m['redis_version']}, "
            f"Python {m['python_version']}, redis-py {m['redis_py_version']}"
            f"{' + hiredis' if m['hiredis'] else ''}; load {m['load_average_at_start']} -> "
            f"{m.get('load_average_at_end')}; {results.get('duration_s')} s; "
            f"{results['cleanup']['keys_left']} keys left")


def markdown(results: dict[str, Any], command: str = REGENERATE) -> str:
    """The results as a markdown document: machine, settings, figures, peers, how to rerun."""
    m = results["machine"]
    md = ["# Benchmarks", "",
          f"Regenerate with `{command}` (needs `pip install 'coordinator[bench]'` for the peers "
          "and a Redis at `COORDINATOR_REDIS_URL`).", "",
          "## Machine", "",
          f"- {m['nproc']} cores: {m['cpu_model']} ({m['os']})",
          f"- Redis {m['redis_version']} on loopback; Python {m['python_version']}, "
          f"redis-py {m['redis_py_version']}{' with hiredis' if m['hiredis'] else ''}",
          f"- load average {m['load_average_at_start']} at the start, "
          f"{m.get('load_average_at_end')} at the end (the machine is shared: figures are noisy;"
          " each is a median or a percentile of one run)",
          f"- the whole run took {results.get('duration_s')} s; "
          f"{results['cleanup']['keys_left']} keys were left behind", "",
          "## Settings", "",
          f"- failover: real `coordinator run` processes, `LEASE_TTL={FAILOVER_TTL:g}`, "
          f"`RENEW_INTERVAL={FAILOVER_RENEW:g}`, `HEARTBEAT_INTERVAL={FAILOVER_RENEW:g}`; "
          "times on Redis's clock (the `at` of `lease_released` and `leader_changed`)",
          "- latency: one connection, each lease call paired with a bare `EVALSHA` of "
          "`return 1` sent next to it (order alternating)",
          "- Redis CPU: `INFO commandstats` growth of `evalsha` over a window of one kind of call,"
          " median of five windows (Redis times commands on the wall clock, so a shared machine"
          " inflates it); a plain lease script (TIME, HGET, HSET, INCR, PEXPIRE) is priced"
          " beside ours to compare machines",
          "- simulated controllers: the real `Heartbeat` client from two processes, unpipelined, "
          "priced by Redis's own CPU time (`INFO cpu`) over the window",
          "- watch: from sending the real acquire/release script to a subscriber in another "
          "process printing it, both on this host's monotonic clock (an upper bound: it includes"
          " the request's trip to Redis)",
          "- status: `cluster_status` in process, and `coordinator status --json` as a command "
          "(its wall time, from spawning the process to its exit, includes starting Python), "
          "against a namespace with no controllers and one with all of them, interleaved",
          "- idle: `coordinator run` at default settings (TTL 30 s, renew 5 s, heartbeat 5 s)",
          "", "## Figures", "",
          _md_table(("figure", "measured", "target", "verdict"), rows(results))]
    peers = peer_rows(results)
    if results.get("peers") is not None and peers:
        md += ["", "## Side by side", "",
               "Same Redis, same run, five processes per election, the leader stopped with "
               "SIGTERM (graceful) or SIGKILL. Peers print when they lead on the host's "
               "monotonic clock; ours are timed on Redis's clock.", "",
               _md_table(PEER_HEADER, peers), "",
               *("- " + line for line in peer_settings(results))]
    return "\n".join(md) + "\n"


def _md_table(header: tuple[str, ...], body: list[Any]) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in body)])
