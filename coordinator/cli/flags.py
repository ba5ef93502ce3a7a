"""Which settings each ``coordinator`` subcommand takes as flags, and their help.

A subcommand lists only the settings it uses; the others keep neutral values, so a rule
between settings it never reads (a TTL against a renew interval, for ``status``) cannot
refuse it. Secrets are never flags: the Sentinel password comes from the environment or the
.env file, and a Redis URL that carries a password is refused as a flag (give it in
COORDINATOR_REDIS_URL, the .env file, or a file named by --redis-url-file)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from coordinator.errors import InvalidArgumentError
from coordinator.settings_rules import BOOLEAN_SETTINGS, env_name

SECRET = frozenset({"redis_sentinel_password"})

HELP: dict[str, str] = {
    "redis_url": "the Redis server, e.g. redis://host:6379/0, without a password",
    "namespace": "prefix of every key, so several deployments can share one Redis",
    "lease_name": "the lease the nodes compete for (one leader per name)",
    "node_id": "this node's id, unique in the namespace (default: the host name)",
    "host": "the host name shown in status (default: this machine's)",
    "role": "primary or standby: a healthy primary gets the leadership back",
    "priority": "handover preference, higher first (default 100 primary, 50 standby)",
    "preferred": "whether this node takes leadership back when healthy (default: primary)",
    "version": "the version this node reports",
    "lease_ttl": "seconds the lease lasts without renewal (the failover time)",
    "renew_interval": "seconds between renewals, at most a third of the TTL",
    "heartbeat_interval": "seconds between heartbeats",
    "heartbeat_retention": "seconds a silent controller is still listed",
    "renew_failure_threshold": "failed renewals in a row before the node stops leading",
    "history_maxlen": "events kept in the history stream",
    "handoff_steady_intervals": "heartbeats a preferred node must be steady before a handover",
    "log_format": "auto, json or console",
    "redis_sentinels": "Sentinel addresses, host:port separated by commas",
    "redis_sentinel_service": "the Sentinel service name",
    "redis_cluster": "talk to a Redis Cluster",
    "tls_ca_file": "file of the CA certificates that sign the Redis server's",
    "tls_cert_file": "file of this client's certificate",
    "tls_key_file": "file of this client's private key",
    "min_replicas_ack": "replicas that must acknowledge each acquire and renew",
    "replica_ack_timeout": "seconds to wait for those acknowledgements",
    "child_grace": "seconds between SIGTERM and SIGKILL for the leader-only command",
    "child_restart": "on-failure, always or never: when the leader-only command restarts",
    "child_pass_redis_url": "give the leader-only command COORDINATOR_REDIS_URL",
    "child_output_prefix": "prefix each line of the command's output with its name",
    "http_host": "address of the health and metrics endpoint",
    "http_port": "port of the health and metrics endpoint (unset: off)",
    "fence_probe_key": "key of the fenced probe writes (fault tests only)",
    "guardian": "a guardian process releases the lease the moment this daemon dies",
    "leases": "many leases: names this node registers at start, e.g. shard-{0..31}",
    "lease_selector": "many leases: globs of the leases this node may hold (* for any)",
    "capacity": "many leases: this node's weight in the placement (default 1)",
}

# what every command that talks to Redis reads
CONNECTION = ("redis_url", "namespace", "log_format", "redis_sentinels",
              "redis_sentinel_service", "redis_cluster", "tls_ca_file", "tls_cert_file",
              "tls_key_file")
EVERYTHING = tuple(name for name in HELP if name not in SECRET)
COMMAND_SETTINGS: dict[str, tuple[str, ...]] = {
    "run": EVERYTHING,
    "demo": EVERYTHING,
    "status": (*CONNECTION, "lease_name", "heartbeat_retention"),
    "watch": (*CONNECTION, "lease_name"),
    "events": CONNECTION,
    "pause": (*CONNECTION, "history_maxlen"),
    "drain": (*CONNECTION, "history_maxlen"),
    "resume": (*CONNECTION, "history_maxlen"),
    "leases": (*CONNECTION, "history_maxlen"),  # add and remove announce leases_changed
    "leases list": CONNECTION,  # list only reads (its flags; its settings are the group's)
    "bench": ("redis_url",),  # the bench picks its own namespace and settings
    # the admin URL comes from COORDINATOR_REDIS_ADMIN_URL(_FILE) only, never a flag
    "redis": tuple(name for name in CONNECTION if name != "redis_url"),
    "handoff": (*CONNECTION, "lease_name", "lease_ttl", "renew_interval", "heartbeat_interval",
                "history_maxlen"),
}
# a command's unused settings take these values, which every cross-setting rule accepts
_NEUTRAL: dict[str, Any] = {
    "lease_ttl": 30.0, "renew_interval": 5.0, "heartbeat_interval": 0.001,
    "heartbeat_retention": 600.0, "child_grace": 0.001, "min_replicas_ack": 0,
    "replica_ack_timeout": 0.001, "renew_failure_threshold": 2, "history_maxlen": 10_000,
    "handoff_steady_intervals": 3, "role": "standby", "node_id": "cli", "host": "cli",
    "version": "0", "log_format": "auto", "child_restart": "on-failure",
    "child_pass_redis_url": False, "child_output_prefix": False, "http_host": "127.0.0.1",
    "redis_cluster": False, "redis_sentinels": "", "leases": "", "lease_selector": "",
}


def add_setting_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of ``command``'s settings: booleans as --flag/--no-flag, the rest VALUE."""
    for name in COMMAND_SETTINGS[command]:
        flag = "--" + name.replace("_", "-")
        text = f"{HELP[name]} (or {env_name(name)})"
        if name in BOOLEAN_SETTINGS:
            parser.add_argument(flag, dest=name, default=None,
                                action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag, dest=name, default=None, metavar="VALUE", help=text)
    if "redis_url" in COMMAND_SETTINGS[command]:
        add_url_file_flag(parser)


def add_lease_filter_flag(parser: argparse.ArgumentParser) -> None:
    """``--lease NAME``: ``watch`` and ``events`` show only what concerns these leases."""
    parser.add_argument(
        "--lease", dest="lease_filter", action="append", default=None, metavar="NAME",
        help="only the events of this lease (repeatable, or comma-separated; a range such as "
             "shard-{0..3} as in COORDINATOR_LEASES), plus the namespace-wide events that "
             "name no lease (the namespace's automation mode changes, leases_changed, gaps in "
             "the history); watch then resyncs on and follows the lapse of each lease named")


def add_url_file_flag(parser: argparse.ArgumentParser) -> None:
    """``--redis-url-file PATH``: the Redis URL (password included) read from a file."""
    parser.add_argument("--redis-url-file", dest="redis_url_file", default=None,
                        metavar="PATH", help="read the Redis URL, password included, from "
                        "this file (a password is never given as a flag)")


def overrides_for(command: str, args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments for ``load_settings``: the flags given, neutral values for the
    settings the command does not use. Raises ``InvalidArgumentError`` for a password in a
    flag or an unreadable URL file."""
    used = COMMAND_SETTINGS.get(command, EVERYTHING)
    overrides: dict[str, Any] = {name: getattr(args, name, None) for name in used}
    url = overrides.get("redis_url")
    if url is not None and (urlsplit(url).password is not None
                            or "password" in parse_qs(urlsplit(url).query)):
        raise InvalidArgumentError(
            "--redis-url must not carry a password (the process list shows flags): set "
            "COORDINATOR_REDIS_URL in the environment or the .env file, or use --redis-url-file")
    path = getattr(args, "redis_url_file", None)
    if path is not None:
        if url is not None:
            raise InvalidArgumentError("give --redis-url or --redis-url-file, not both")
        try:
            overrides["redis_url"] = Path(path).read_text().strip()
        except OSError as e:
            raise InvalidArgumentError(f"--redis-url-file: cannot read {path}: "
                                       f"{e.strerror}") from None
    for name, value in _NEUTRAL.items():
        if name not in used:
            overrides[name] = value
    return overrides
