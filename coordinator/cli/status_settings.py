"""The settings ``coordinator status`` reads, without pydantic: where the one ``Settings``
object (``coordinator/settings.py``) could decide anything but "valid, with these values",
the answer is None and that object decides, so every refusal stays its own.

It reads a plain ``redis://`` URL, the namespace, the lease name, the heartbeat retention and
the log format, through the same rules (``settings_rules``, ``keys.check_name``); it serves
none of Sentinel, Cluster, TLS, a .env file, or a variable it does not know."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from coordinator.errors import InvalidArgumentError
from coordinator.protocol import keys
from coordinator.settings_rules import (
    CHILD_ONLY_VARIABLES,
    DEFAULT_HEARTBEAT_RETENTION,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    DEFAULT_REDIS_URL,
    ENV_FILE,
    ENV_PREFIX,
    LOG_FORMATS,
    SETTING_NAMES,
    check_redis_url,
    cross_setting_problem,
    env_name,
)

# what this reader parses; any other setting given (a flag, or a variable the command does
# not override with a neutral value) leaves the decision to Settings
_READ = frozenset({"redis_url", "namespace", "lease_name", "heartbeat_retention", "log_format",
                   "redis_sentinel_service"})
# how a variable or flag spells a number this reader takes for the same float pydantic makes
_PLAIN_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")
_DATABASE = re.compile(r"/?[0-9]{0,9}")


@dataclass(frozen=True)
class StatusSettings:
    """The settings ``cluster_status`` reads, and the URL to read them from."""

    redis_url: str
    namespace: str
    lease_name: str
    heartbeat_retention: float


def status_settings(overrides: Mapping[str, Any], used: Collection[str],
                    environ: Mapping[str, str] = os.environ) -> StatusSettings | None:
    """Settings from ``overrides`` (``flags.overrides_for``: the flags of the ``used``
    settings, None where not given, and neutral values for the others) over ``environ``;
    None wherever ``load_settings`` might refuse them or read them differently."""
    if os.path.exists(ENV_FILE):
        return None
    neutral = {name: value for name, value in overrides.items() if name not in used}
    given = {name: value for name, value in overrides.items()
             if name in used and value is not None}
    known = {env_name(name): name for name in SETTING_NAMES}
    for variable, value in environ.items():
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in CHILD_ONLY_VARIABLES:
            continue
        if variable != upper or upper not in known:
            return None  # unknown (Settings refuses it), or spelt in a case Settings folds
        if known[upper] not in neutral:  # Settings never reads a neutral one's variable
            given.setdefault(known[upper], value)  # a flag wins
    if not given.keys() <= _READ:
        return None
    return _checked(given, neutral)


def _checked(given: Mapping[str, Any], neutral: Mapping[str, Any]) -> StatusSettings | None:
    url = str(given.get("redis_url", DEFAULT_REDIS_URL))
    namespace = str(given.get("namespace", DEFAULT_NAMESPACE))
    lease_name = str(given.get("lease_name", DEFAULT_LEASE_NAME))
    retention = given.get("heartbeat_retention", str(DEFAULT_HEARTBEAT_RETENTION))
    if given.get("log_format", LOG_FORMATS[0]) not in LOG_FORMATS:
        return None
    if not isinstance(retention, str) or not _PLAIN_NUMBER.fullmatch(retention):
        return None
    if not _plain_url(url):
        return None
    try:
        check_redis_url(url)
        keys.check_name("name", namespace)
        keys.check_name("name", lease_name)
    except (ValueError, InvalidArgumentError):  # InvalidArgumentError is no ValueError
        return None
    seconds = float(retention)
    if seconds <= 0:
        return None
    every = SimpleNamespace(**{**dict.fromkeys(SETTING_NAMES), **neutral,
                               "redis_cluster": False, "redis_sentinels": "",
                               "heartbeat_retention": seconds})
    if cross_setting_problem(every) is not None:
        return None
    return StatusSettings(url, namespace, lease_name, seconds)


def _plain_url(url: str) -> bool:
    """A ``redis://`` URL the stdlib client reads as redis-py does: no query (redis-py reads
    options there), a numeric database, a password with any user name, no white space."""
    parts = urlsplit(url)
    return (parts.scheme == "redis" and not parts.query and not parts.fragment
            and not any(c.isspace() for c in url)
            and _DATABASE.fullmatch(parts.path) is not None
            and not (parts.username and parts.password is None))
