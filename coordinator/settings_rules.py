"""The settings' names and plain rules, standard library only.

``coordinator/settings.py`` builds the one pydantic ``Settings`` object from them; the
quick reader of ``coordinator status`` (``coordinator/cli/status_settings.py``) applies the
same rules without loading pydantic. A rule lives here once and both call it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

ENV_PREFIX = "COORDINATOR_"
ENV_FILE = ".env"  # read from the working directory, as pydantic-settings does
REDIS_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_NAMESPACE = "coordinator"
DEFAULT_LEASE_NAME = "global"
DEFAULT_HEARTBEAT_RETENTION = 600.0

# every field of Settings, in its order (tests/test_status_settings.py holds the two equal)
SETTING_NAMES = (
    "redis_url", "namespace", "lease_name", "node_id", "host", "role", "priority", "preferred",
    "version", "lease_ttl", "renew_interval", "heartbeat_interval", "heartbeat_retention",
    "renew_failure_threshold", "history_maxlen", "handoff_steady_intervals", "log_format",
    "redis_sentinels", "redis_sentinel_service", "redis_sentinel_password", "redis_cluster",
    "tls_ca_file", "tls_cert_file", "tls_key_file", "min_replicas_ack", "replica_ack_timeout",
    "child_grace", "child_restart", "child_pass_redis_url", "child_output_prefix", "guardian",
    "http_host", "http_port", "fence_probe_key", "leases", "lease_selector", "capacity",
)
# the settings typed bool (or bool | None): flags --name/--no-name
BOOLEAN_SETTINGS = frozenset({"preferred", "redis_cluster", "child_pass_redis_url",
                              "child_output_prefix", "guardian"})
LOG_FORMATS = ("auto", "json", "console")

# COORDINATOR_* names the daemon itself sets for a leader-only child (which may run
# `coordinator status` in turn) that are not settings
CHILD_ONLY_VARIABLES = frozenset({ENV_PREFIX + "TERM", ENV_PREFIX + "LEASE",
                                  # `coordinator redis install-functions` only (cli/redis_admin.py)
                                  ENV_PREFIX + "REDIS_ADMIN_URL", ENV_PREFIX + "REDIS_ADMIN_URL_FILE"})


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return ENV_PREFIX + field.upper()


def check_redis_url(url: str) -> None:
    """Raise ValueError (its message reads after the variable's name) unless ``url`` is a
    Redis URL a client can use."""
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("must name a host, e.g. redis://127.0.0.1:6379/0")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("has a malformed port") from None


def child_grace_or_default(child_grace: float | None, lease_ttl: float) -> float:
    """Seconds between SIGTERM and SIGKILL for the child: as set, or min(5, LEASE_TTL / 3)."""
    return child_grace if child_grace is not None else min(5.0, lease_ttl / 3)


def cross_setting_problem(s: Any) -> tuple[str, str] | None:
    """The first rule between settings that ``s`` (anything with the settings' attributes)
    breaks, as (the field to name, the rule), or None."""
    if s.renew_interval > s.lease_ttl / 3:
        return ("renew_interval", "must be at most a third of COORDINATOR_LEASE_TTL "
                f"({s.renew_interval} > {s.lease_ttl} / 3)")
    if s.redis_cluster and s.redis_sentinels:
        return ("redis_cluster", "cannot be combined with COORDINATOR_REDIS_SENTINELS")
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        return ("tls_key_file", "and COORDINATOR_TLS_CERT_FILE go together")
    if s.redis_cluster and s.min_replicas_ack:
        # WAIT carries no key: a cluster client would send it to some node, not the
        # master of the lease's slot, so the acknowledgement would prove nothing
        return ("min_replicas_ack", "cannot be combined with "
                "COORDINATOR_REDIS_CLUSTER (WAIT would not reach the lease's master)")
    if s.min_replicas_ack and s.replica_ack_timeout >= s.renew_interval:
        return ("replica_ack_timeout", "must be below COORDINATOR_RENEW_INTERVAL")
    if s.heartbeat_retention < 3 * s.heartbeat_interval:
        return ("heartbeat_retention", "must be at least three COORDINATOR_HEARTBEAT_INTERVAL")
    # a grace as long as the time between a renewal and the lease's end would have the
    # watchdog SIGTERM the child before every renewal could arrive
    grace = child_grace_or_default(s.child_grace, s.lease_ttl)
    if grace >= s.lease_ttl - s.renew_interval:
        return ("child_grace", "must be below COORDINATOR_LEASE_TTL - "
                f"COORDINATOR_RENEW_INTERVAL ({grace} >= {s.lease_ttl} - {s.renew_interval})")
    return None


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.query:  # redis-py also reads ?password=...
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(k == "password" for k, _ in pairs):
            query = "&".join(f"{k}=***" if k == "password" else f"{k}={v}" for k, v in pairs)
            parts = parts._replace(query=query)
    if parts.password is None:
        return urlunsplit(parts) if parts.query != urlsplit(url).query else url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
