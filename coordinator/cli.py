"""The ``coordinator`` command: run | status (and the operator commands)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from coordinator.backend import connect
from coordinator.errors import CoordinatorError
from coordinator.logs import configure_logging
from coordinator.settings import Settings, SettingsError, env_name, load_settings
from coordinator.status import cluster_status, render_status

EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for name in Settings.model_fields:
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None, metavar="VALUE",
            help=f"overrides {env_name(name)}",
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coordinator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the daemon in the foreground")
    _add_setting_flags(run)
    status = commands.add_parser("status", help="show the leader and the controllers")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    _add_setting_flags(status)
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in Settings.model_fields}
    return load_settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings_from(args)
    except SettingsError as e:
        print(f"coordinator: {e}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_format)
    if args.command == "run":
        return asyncio.run(_run(settings))
    return asyncio.run(_status(settings, as_json=args.json))


async def _run(settings: Settings) -> int:
    from coordinator.daemon import Daemon
    from coordinator.http import HttpServer

    daemon = Daemon(settings)
    http = None
    if settings.http_port is not None:
        # listen before the start-up checklist, so a port clash fails fast, before the
        # daemon has taken the lease; /healthz answers 503 until the loops run
        http = HttpServer(daemon, host=settings.http_host, port=settings.http_port)
        try:
            await http.start()
        except CoordinatorError as e:
            print(f"coordinator: {e}", file=sys.stderr)
            return EXIT_UNAVAILABLE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await daemon.start()
        await stop.wait()
        await daemon.stop()
    finally:
        if http is not None:
            await http.stop()
    return EXIT_OK


async def _status(settings: Settings, *, as_json: bool) -> int:
    redis: Any = connect(settings, op_timeout=2.0)
    try:
        snapshot = await cluster_status(redis, settings)
    except CoordinatorError as e:
        print(f"coordinator: cannot read status from {settings.redis_url_redacted}: {e}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        await redis.aclose()
    if as_json:
        print(json.dumps(snapshot))
    else:
        print(render_status(snapshot))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
