"""``coordinator leases add NAME... [--prefer NODE,...] | remove NAME... | list [--json]``:
the namespace's registry of many leases."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from coordinator.cli.common import EXIT_CORRUPT, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail

if TYPE_CHECKING:
    from coordinator.leases.registry import RegistryChange
    from coordinator.settings import Settings

_NAMES_HELP = ("lease names, separate or comma-separated, each may carry one range: "
               "shard-{0..63} (the COORDINATOR_LEASES syntax)")


def fill_leases_parser(leases: argparse.ArgumentParser,
                       add_setting_flags: Callable[[argparse.ArgumentParser, str], None]) -> None:
    """Add ``leases``' own subcommands and their flags (``add_setting_flags(parser, group)``,
    a group of ``flags.COMMAND_SETTINGS``) to its parser."""
    actions = leases.add_subparsers(dest="leases_command", required=True)
    add = actions.add_parser("add", help="register leases (those registered stay as they are)",
                             description="Register lease names; every many-lease daemon places "
                                         "them within one renew interval.")
    add.add_argument("names", nargs="+", metavar="NAME", help=_NAMES_HELP)
    add.add_argument("--prefer", metavar="NODE,NODE", default=None,
                     help="the leases' preferred holders, in order (replaces what was set)")
    remove = actions.add_parser("remove", help="unregister leases (their holders release them)",
                                description="Unregister lease names; their holders release "
                                            "them at their next plan, their terms are kept.")
    remove.add_argument("names", nargs="+", metavar="NAME", help=_NAMES_HELP)
    listing = actions.add_parser("list", help="every registered lease, its holder and term")
    listing.add_argument("--json", action="store_true", help="one JSON array on stdout")
    add_setting_flags(add, "leases")
    add_setting_flags(remove, "leases")
    add_setting_flags(listing, "leases list")


async def leases_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``leases add | remove | list``; bad names or node ids exit 2 before Redis."""
    from coordinator.errors import InvalidArgumentError
    from coordinator.leases.names import LeaseSettingError, parse_lease_names
    from coordinator.protocol import keys

    if args.leases_command == "list":
        return await _list(settings, as_json=args.json)
    text = ",".join(args.names)
    try:
        names = parse_lease_names(text)
        if not names:
            raise InvalidArgumentError("name at least one lease")
        preferred = None
        if getattr(args, "prefer", None) is not None:
            preferred = [keys.check_node_id("preferred holder", n.strip())
                         for n in args.prefer.split(",")]
    except LeaseSettingError as e:
        return fail(f"lease names: {e.rule} (got {text!r})", EXIT_USAGE)
    except InvalidArgumentError as e:
        return fail(str(e), EXIT_USAGE)
    return await _change(settings, args.leases_command, names, preferred)


async def _change(settings: Settings, action: str, names: Sequence[str],
                  preferred: list[str] | None) -> int:
    from coordinator.connection.backend import connect
    from coordinator.errors import CoordinatorError, InvalidArgumentError
    from coordinator.leases.registry import RegistryFullError, add_leases, remove_leases

    redis: Any = connect(settings, op_timeout=2.0)
    try:
        if action == "add":
            change = await add_leases(redis, settings.namespace, names, preferred=preferred,
                                      history_maxlen=settings.history_maxlen)
        else:
            change = await remove_leases(redis, settings.namespace, names,
                                         history_maxlen=settings.history_maxlen)
    except (RegistryFullError, InvalidArgumentError) as e:
        return fail(str(e), EXIT_USAGE)
    except CoordinatorError as e:
        return fail(f"cannot change the leases on {settings.redis_url_redacted}: {e}",
                    EXIT_UNAVAILABLE)
    finally:
        await redis.aclose()
    print(_said(change, asked=len(names)))
    return EXIT_OK


def _leases(count: int) -> str:
    return f"{count} lease{'' if count == 1 else 's'}"


def _said(change: RegistryChange, *, asked: int) -> str:
    """``added 3 leases (version 4)``, and what was left as it was."""
    done = "added" if change.action == "add" else "removed"
    parts = []
    if change.names:
        parts.append(f"{done} {_leases(len(change.names))}")
    if change.preferred_for:
        parts.append(f"set the preferred holders of {_leases(len(change.preferred_for))}")
    left = asked - len(change.names)
    if left:
        state = "registered already" if change.action == "add" else "not registered"
        parts.append(f"{_leases(left)} {state}")
    if not change.changed:
        parts.insert(0, "nothing changed")
    return f"{', '.join(parts)} (version {change.version})"


async def _list(settings: Settings, *, as_json: bool) -> int:
    import json

    from coordinator.connection.backend import connect
    from coordinator.errors import CoordinatorError, CorruptDataError
    from coordinator.leases.listing import lease_rows, unreadable_parts
    from coordinator.leases.view import read_view
    from coordinator.protocol.corrupt_keys import corrupt_key_remedy

    redis: Any = connect(settings, op_timeout=2.0)
    try:
        view = await read_view(redis, settings.namespace)
    except CorruptDataError as e:
        return fail(f"{e}: {corrupt_key_remedy(e.key)}", EXIT_CORRUPT)
    except CoordinatorError as e:
        return fail(f"cannot read the leases from {settings.redis_url_redacted}: {e}",
                    EXIT_UNAVAILABLE)
    finally:
        await redis.aclose()
    rows = lease_rows(view)
    if as_json:
        print(json.dumps(rows))
    else:
        print(_table(rows, settings.namespace))
    for part in unreadable_parts(view, settings.namespace):
        fail(part.message, EXIT_CORRUPT)
    return EXIT_CORRUPT if view.corrupt else EXIT_OK


def _table(rows: list[dict[str, Any]], namespace: str) -> str:
    if not rows:
        return f"no leases registered in namespace {namespace}"
    header = ("LEASE", "HOLDER", "TERM", "LEFT", "PREFERRED")
    cells = [header] + [(
        row["name"],
        "(unreadable)" if "corrupt" in row else row["holder_id"] or "-",
        "-" if row["term"] is None else str(row["term"]),
        "-" if row["expires_in_ms"] is None else f"{row['expires_in_ms'] / 1000:.1f}s",
        ",".join(row["preferred"]) or "-",
    ) for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
        + "  " + line[-1] for line in cells)
