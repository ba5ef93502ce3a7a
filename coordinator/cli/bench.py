"""``coordinator bench``: measure latency, cost and failover against a Redis, leave no keys."""

from __future__ import annotations

import argparse
import json
import sys

from coordinator.bench.options import DEFAULT_PARTS, PARTS, BenchOptions
from coordinator.cli.common import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail
from coordinator.cli.flags import add_url_file_flag
from coordinator.errors import CoordinatorError, InvalidArgumentError
from coordinator.settings import Settings, env_name

_SIZES = {  # flag -> (BenchOptions field, type, help)
    "--pairs": ("pairs", int, "renew/bare EVALSHA pairs (acquire pairs: a quarter)"),
    "--cpu-calls": ("cpu_calls", int, "calls per INFO commandstats window"),
    "--controllers": ("controllers", int, "simulated controllers (heartbeat cost, load, status)"),
    "--scale-seconds": ("scale_seconds", float, "seconds the controllers heartbeat at 1/s"),
    "--status-runs": ("status_runs", int, "`coordinator status --json` processes timed"),
    "--watch-events": ("watch_events", int, "tenure changes per subscriber kind"),
    "--handovers": ("handovers", int, "graceful handovers between real daemons"),
    "--crashes": ("crashes", int, "kill -9 failovers between real daemons"),
    "--idle-seconds": ("idle_seconds", float, "shortest window for the idle daemon's CPU"),
    "--peer-handovers": ("peer_handovers", int, "graceful handovers per peer and variant"),
    "--peer-crashes": ("peer_crashes", int, "kill -9 per peer at matched settings"),
    "--peer-crash-cap": ("peer_crash_cap", float, "longest wait for a peer's crash failover (s)"),
    "--many-nodes": ("many_nodes", int, "simulated many-lease nodes (part many)"),
    "--many-leases": ("many_leases", int, "leases among them, and as many single-lease daemons"),
    "--many-rounds": ("many_rounds", int, "renew intervals' traffic priced each way"),
    "--placement-nodes": ("placement_nodes", int, "real many-lease nodes in-process (placement)"),
    "--placement-leases": ("placement_leases", int, "leases placed among them"),
    "--placement-ttl": ("placement_ttl", float, "their lease TTL in seconds"),
    "--placement-renew": ("placement_renew", float, "their renew interval in seconds"),
    "--placement-steady": ("placement_steady", float, "seconds of steady rounds measured"),
}


def fill_bench_parser(bench: argparse.ArgumentParser) -> None:
    """Add ``bench``'s options to its parser."""
    bench.description = ("Measure lease latency, Redis CPU, watch latency and failover "
                         "against a Redis, leaving no keys behind.")
    bench.add_argument("--redis-url", dest="redis_url", default=None, metavar="VALUE",
                       help=f"the Redis to measure, without a password (or {env_name('redis_url')})")
    add_url_file_flag(bench)
    out = bench.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object on stdout")
    out.add_argument("--markdown", action="store_true", help="a markdown report on stdout")
    bench.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    bench.add_argument("--parts", metavar="LIST", default=",".join(DEFAULT_PARTS),
                       help=f"comma-separated, from {','.join(PARTS)} (default: all but peers)")
    bench.add_argument("--peers", action="store_true",
                       help="add the peers part (needs: pip install 'coordinator[bench]')")
    for flag, (_, kind, text) in _SIZES.items():
        bench.add_argument(flag, type=kind, default=None, metavar="N", help=text)


def options_from(args: argparse.Namespace) -> BenchOptions:
    """The bench options the flags ask for (``--quick`` first, explicit sizes on top)."""
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    if args.peers and "peers" not in parts:
        parts += ("peers",)
    options = BenchOptions(parts=parts)
    if args.quick:
        options = options.quick()
    sizes = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _, _) in
             _SIZES.items()}
    given = {k: v for k, v in sizes.items() if v is not None}
    return BenchOptions(**{**options.__dict__, **given}) if given else options


def _progress(line: str) -> None:
    print(f"bench: {line}", file=sys.stderr, flush=True)


async def bench_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run the bench and print a table, JSON or markdown; exit 1 if Redis fails it."""
    try:
        options = options_from(args)
    except InvalidArgumentError as e:
        return fail(str(e), EXIT_USAGE)
    # imported here: every other command would otherwise load the whole bench at start-up
    from redis import exceptions as redis_exceptions

    from coordinator.bench.render import markdown, text_table
    from coordinator.bench.runner import run_bench

    url = settings.redis_url.get_secret_value()
    try:
        results = await run_bench(url, options, _progress)
    # OSError covers timeouts; RuntimeError/EOFError: a child process died or never started
    except (CoordinatorError, redis_exceptions.RedisError, OSError, RuntimeError, EOFError) as e:
        return fail(f"bench against {settings.redis_url_redacted} failed: "
                    f"{type(e).__name__}: {e}", EXIT_UNAVAILABLE)
    if args.json:
        print(json.dumps(results))
    elif args.markdown:
        print(markdown(results), end="")
    else:
        print(text_table(results))
    return EXIT_OK
