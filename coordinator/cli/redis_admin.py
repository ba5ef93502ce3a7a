"""``coordinator redis install-functions``: load this version's function library into Redis
as an administrative user, so the runtime user needs only ``+fcall`` (see functions.py).

The administrative credentials come from the environment, never from a flag (a flag shows in
``ps`` and shell history): ``COORDINATOR_REDIS_ADMIN_URL``, or a file named by
``COORDINATOR_REDIS_ADMIN_URL_FILE`` holding the URL (a Kubernetes or Docker secret). Every
other setting (TLS files, Sentinel, Cluster) is the daemon's.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from redis import exceptions as redis_exceptions

from coordinator.cli.common import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail
from coordinator.connection.backend import connect
from coordinator.connection.boundary import redis_errors, text
from coordinator.errors import CoordinatorError
from coordinator.protocol import functions
from coordinator.settings import Settings

ADMIN_URL_ENV = "COORDINATOR_REDIS_ADMIN_URL"
ADMIN_URL_FILE_ENV = "COORDINATOR_REDIS_ADMIN_URL_FILE"


def fill_redis_parser(redis: argparse.ArgumentParser,
                      add_setting_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``redis``'s own subcommands and their flags to its parser."""
    actions = redis.add_subparsers(dest="redis_command", required=True)
    install = actions.add_parser(
        "install-functions",
        help=f"load this version's function library (credentials from {ADMIN_URL_ENV})",
        description=f"FUNCTION LOAD this version's library as the user of {ADMIN_URL_ENV} "
                    f"(or of the URL in the file {ADMIN_URL_FILE_ENV} names); idempotent.")
    install.add_argument("--prune", action="store_true",
                         help="also delete every other version's coordinator library "
                              "(only once no daemon of an older version runs)")
    add_setting_flags(install)


def admin_url(environ: dict[str, str] | None = None) -> str:
    """The administrative URL from the environment; ValueError saying what is missing."""
    env = os.environ if environ is None else environ
    if env.get(ADMIN_URL_ENV):
        return env[ADMIN_URL_ENV].strip()
    if env.get(ADMIN_URL_FILE_ENV):
        path = Path(env[ADMIN_URL_FILE_ENV])
        try:
            url = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ValueError(f"{ADMIN_URL_FILE_ENV}={path}: cannot read it ({e.strerror})") from e
        if url:
            return url
        raise ValueError(f"{ADMIN_URL_FILE_ENV}={path} is empty")
    raise ValueError(f"set {ADMIN_URL_ENV} (or {ADMIN_URL_FILE_ENV}) to an administrative "
                     "user's redis:// URL; the runtime user may not load functions")


async def redis_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        url = admin_url()
    except ValueError as e:
        return fail(str(e), EXIT_USAGE)
    admin_settings = settings.model_copy(update={"redis_url": SecretStr(url)})
    redis: Any = connect(admin_settings, op_timeout=5.0)
    name = functions.library_name()
    try:
        with redis_errors(name):
            loaded = await functions.install(redis)
            others = [lib for lib in await _libraries(redis) if lib != name]
            if args.prune:
                for lib in others:
                    await redis.function_delete(lib)
    except CoordinatorError as e:
        if isinstance(e.__cause__, redis_exceptions.NoPermissionError):
            return fail(f"the user of {ADMIN_URL_ENV} may not load functions on "
                        f"{admin_settings.redis_url_redacted}: {e.__cause__}", EXIT_UNAVAILABLE)
        return fail(f"cannot install {name}: {e}", EXIT_UNAVAILABLE)
    finally:
        await redis.aclose()
    print(f"function library {name}: {'loaded' if loaded else 'already loaded'}")
    for lib in others:
        print(f"{'deleted' if args.prune else 'also present'}: {lib}")
    return EXIT_OK


async def _libraries(redis: Any) -> list[str]:
    """Names of every coordinator library on the server."""
    listing = await redis.function_list(library=functions.LIBRARY_PREFIX + "*")
    names = []
    for entry in listing:
        fields = dict(zip(entry[::2], entry[1::2], strict=False)) if isinstance(entry, list) else entry
        fields = {str(text(k)): v for k, v in fields.items()}
        names.append(str(text(fields["library_name"])))
    return [n for n in names if n.startswith(functions.LIBRARY_PREFIX)]
