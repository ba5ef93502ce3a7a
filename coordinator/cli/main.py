"""The coordinator command: run, status, watch, events, pause, drain, resume, handoff, leases,
bench."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from coordinator.cli.common import (
    EXIT_CORRUPT,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    fail,
    quiet_broken_pipe,
    stdout_reader_gone,
)
from coordinator.cli.flags import add_lease_filter_flag, add_setting_flags, overrides_for
from coordinator.cli.modes import MODE_COMMANDS

if TYPE_CHECKING:
    from coordinator.child.child import Command
    from coordinator.settings import Settings

# each command imports what it runs when it runs: `coordinator status` loads neither the
# daemon, nor the child runner, nor the event models, nor the bench

__all__ = ["EXIT_CORRUPT", "EXIT_OK", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coordinator")
    except PackageNotFoundError:
        return "0+unknown"


class _Version(argparse.Action):
    """``--version``: looked up only when asked (the package metadata costs a start-up)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"coordinator {_version()}")
        parser.exit()


# every subcommand and its one-line help: the top-level parser lists them all, but fills in
# only the flags of the one that runs (each filler may import its command's module)
_COMMANDS: dict[str, str] = {
    "run": "run the daemon in the foreground",
    "status": "show the leader and the controllers",
    "watch": "print events as they happen, until Ctrl-C",
    "events": "print the stored event history, oldest first",
    **{name: description for name, (_, description) in MODE_COMMANDS.items()},
    "demo": "a local Redis, three daemons and a watched failover",
    "handoff": "hand the lease over to another live node",
    "leases": "add, remove or list the namespace's many leases",
    "redis": "administer the coordinator's Redis (admin user)",
    "bench": "measure lease latency, Redis CPU, watch latency and failover",
}


def _fill(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the arguments of subcommand ``name`` to its parser."""
    if name == "run":
        parser.usage = "coordinator run [FLAGS] [-- CMD [ARGS...]]"
        parser.description = "Run the daemon; with -- CMD, run CMD only while this node leads."
    elif name == "status":
        parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    elif name == "watch":
        parser.add_argument("--json", action="store_true",
                            help="one JSON object per event and line on stdout, nothing else")
        add_lease_filter_flag(parser)
    elif name == "events":
        parser.add_argument("--since", metavar="ID|DURATION",
                            help="only events after a stream id, or younger than e.g. 90s, 10m, 2h")
        parser.add_argument("--json", action="store_true",
                            help="one JSON object per line on stdout")
        add_lease_filter_flag(parser)
    elif name in MODE_COMMANDS:
        parser.add_argument("--lease", metavar="NAME", default=None,
                            help="many leases: set this lease's own mode (the stricter of it "
                            "and the namespace's applies to it)")
    elif name == "handoff":
        parser.add_argument("--to", required=True, metavar="NODE",
                            help="the node to hand over to")
    elif name == "leases":
        from coordinator.cli.leases import fill_leases_parser

        fill_leases_parser(parser, add_setting_flags)
        return
    elif name == "redis":
        from coordinator.cli.redis_admin import fill_redis_parser

        fill_redis_parser(parser, lambda p: add_setting_flags(p, "redis"))
        return
    elif name == "bench":
        from coordinator.cli.bench import fill_bench_parser

        fill_bench_parser(parser)  # only --redis-url: the bench picks its own namespace and settings
        return
    add_setting_flags(parser, name)


def _parser(filled: Collection[str] = tuple(_COMMANDS)) -> argparse.ArgumentParser:
    """The command line, the arguments of the ``filled`` subcommands filled in (the others
    are listed, with their help, but parse nothing): every one by default, only the one that
    runs for ``main``."""
    parser = argparse.ArgumentParser(prog="coordinator", description=__doc__)
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in _COMMANDS.items():
        sub = commands.add_parser(name, help=text)
        if name in filled:
            _fill(name, sub)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is no option (the top-level parser
    has only --help and --version, neither of which takes a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _settings_from(args: argparse.Namespace) -> Settings:
    from coordinator.settings import load_settings

    return load_settings(**overrides_for(args.command, args))


def _split_command(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """``run [FLAGS] -- CMD [ARGS...]``: the coordinator's arguments, and CMD if given."""
    argv = list(argv)
    if "--" not in argv:
        return argv, None
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    try:
        status = _main(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # a reader gone early shows here, not in the interpreter's exit
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise  # a pipe of its own broke (a child's, a socket's): a failure, not `| head`
        return quiet_broken_pipe()  # `coordinator status | head -1`
    return status


def _main(argv: Sequence[str]) -> int:
    own, child_argv = _split_command(argv)
    named = _command_in(own)
    args = _parser(filled=() if named is None else (named,)).parse_args(own)
    if child_argv is not None and args.command != "run":
        return fail(f"only `coordinator run` takes a command after `--`, not {args.command!r}",
                    EXIT_USAGE)
    if args.command == "status":
        from coordinator.cli.status_quick import quick_snapshot

        snapshot = quick_snapshot(args)  # None: the full path below answers
        if snapshot is not None:
            return _show_status(snapshot, as_json=args.json)
    # here, not at the top: `--version`, `--help` and the quick status do without them
    import asyncio
    import logging

    from coordinator.errors import InvalidArgumentError
    from coordinator.logs import configure_logging
    from coordinator.settings import SettingsError

    try:
        settings = _settings_from(args)
        command = None
        if child_argv is not None:
            from coordinator.child.child import resolve_command

            command = resolve_command(child_argv)
    except SettingsError as e:
        print(f"coordinator: {e}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidArgumentError as e:
        return fail(str(e), EXIT_USAGE)
    # only the daemon narrates; the other commands log problems, their output is on stdout
    configure_logging(settings.log_format,
                      level=logging.INFO if args.command == "run" else logging.WARNING)
    if args.command == "run":
        return asyncio.run(_run(settings, command))
    if args.command == "status":
        return asyncio.run(_status(settings, as_json=args.json))
    if args.command in ("watch", "events"):
        from coordinator.cli.watch import events_command, watch_command
    if args.command == "watch":
        return asyncio.run(watch_command(settings, as_json=args.json, leases=args.lease_filter))
    if args.command == "events":
        return asyncio.run(events_command(settings, since=args.since, as_json=args.json,
                                          leases=args.lease_filter))
    if args.command == "demo":
        from coordinator.cli.demo import demo_command

        url_given = "redis_url" in settings.model_fields_set
        return asyncio.run(demo_command(settings, url_given=url_given))
    if args.command == "handoff":
        from coordinator.cli.handoff import handoff_command

        return asyncio.run(handoff_command(settings, args.to))
    if args.command == "leases":
        from coordinator.cli.leases import leases_command

        return asyncio.run(leases_command(settings, args))
    if args.command == "redis":
        from coordinator.cli.redis_admin import redis_command

        return asyncio.run(redis_command(settings, args))
    if args.command == "bench":
        from coordinator.cli.bench import bench_command

        return asyncio.run(bench_command(settings, args))
    from coordinator.cli.modes import mode_command

    lease = args.lease
    if lease is not None:
        from coordinator.protocol import keys

        try:
            keys.check_name("lease name", lease)
        except InvalidArgumentError as e:
            return fail(f"--lease: {e}", EXIT_USAGE)
    return asyncio.run(mode_command(settings, MODE_COMMANDS[args.command][0], lease))


async def _run(settings: Settings, command: Command | None = None) -> int:
    import asyncio
    import signal

    from coordinator.child.child import ChildRunner
    from coordinator.daemon.daemon import Daemon
    from coordinator.daemon.http import HttpServer
    from coordinator.errors import CoordinatorError
    from coordinator.protocol.probe import start_probe

    stop = asyncio.Event()
    runner: Any
    daemon: Any
    if settings.many_leases:
        from coordinator.cli.run_leases import lease_node

        daemon, runner = lease_node(settings, command, on_finished=stop.set)
    else:
        runner = ChildRunner(settings, command, on_finished=stop.set) if command else None
        daemon = Daemon(settings, hooks=runner.hooks() if runner else None)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    http = None
    if settings.http_port is not None:
        # listen before the start-up checklist, so a port clash fails fast, before the
        # daemon has taken the lease; /healthz answers 503 until the loops run
        http = HttpServer(daemon, host=settings.http_host, port=settings.http_port)
        try:
            await http.start()
        except CoordinatorError as e:
            return fail(str(e), EXIT_UNAVAILABLE)
    if runner is not None:
        try:
            await runner.open()
        except CoordinatorError as e:
            await runner.close()
            if http is not None:
                await http.stop()
            return fail(str(e), EXIT_UNAVAILABLE)
    probe = None
    try:
        await daemon.start()
        probe = start_probe(daemon)
        await stop.wait()
        if probe is not None:
            probe.cancel()  # no new fenced writes once stopping
        if runner is not None:
            runner.begin_shutdown()  # the child's grace starts now, the lease goes after it
        await daemon.stop()
    finally:
        if runner is not None:
            await runner.close()
        if http is not None:
            await http.stop()
    return runner.exit_status if runner is not None else EXIT_OK


async def _status(settings: Settings, *, as_json: bool) -> int:
    from coordinator.cli.status_quick import OP_TIMEOUT
    from coordinator.connection.backend import connect
    from coordinator.errors import CoordinatorError
    from coordinator.watching.status import cluster_status

    redis: Any = connect(settings, op_timeout=OP_TIMEOUT)
    try:
        snapshot = await cluster_status(redis, settings)
    except CoordinatorError as e:
        print(f"coordinator: cannot read status from {settings.redis_url_redacted}: {e}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        await redis.aclose()
    return _show_status(snapshot, as_json=as_json)


def _show_status(snapshot: dict[str, Any], *, as_json: bool) -> int:
    """Print a ``cluster_status`` snapshot; exit 3 (and say why) if its lease key is corrupt."""
    import json

    from coordinator.watching.status import render_status

    if as_json:
        print(json.dumps(snapshot))
    else:
        print(render_status(snapshot))
    status = EXIT_OK
    error = snapshot.get("error")
    if error is not None:
        status = fail(f"lease key {error['key']} holds a {error['type']}, not a lease record: "
                      f"{error['remedy']}", EXIT_CORRUPT)
    for problem in snapshot.get("leases_errors") or ():  # only with many leases registered
        status = fail(problem["message"], EXIT_CORRUPT)
    return status


if __name__ == "__main__":
    sys.exit(main())
