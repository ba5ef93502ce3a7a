"""The one Settings object: COORDINATOR_* variables (or .env), validated as a whole."""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    check_redis_url,
    child_grace_or_default,
    cross_setting_problem,
    env_name,
    redact_url,
)

__all__ = ["CHILD_ONLY_VARIABLES", "ENV_PREFIX", "Settings", "SettingsError",
           "UnknownSettingError", "env_name", "load_settings", "redact_url"]


def _package_version() -> str:
    # imported here: only a command that reports its version (run, demo) pays for the metadata
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coordinator")
    except PackageNotFoundError:
        return "0+unknown"


class SettingsError(InvalidArgumentError):
    """A setting is invalid; the message names the variable and the rule."""


class UnknownSettingError(SettingsError, TypeError):
    """A keyword argument or COORDINATOR_* variable that is no setting (a misspelling)."""


class Settings(BaseSettings):
    """Everything a daemon or a CLI command needs to know, frozen once loaded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=ENV_FILE, extra="ignore", frozen=True,
        validate_default=True,
    )

    redis_url: SecretStr = SecretStr(DEFAULT_REDIS_URL)
    namespace: str = DEFAULT_NAMESPACE
    lease_name: str = DEFAULT_LEASE_NAME
    node_id: str = Field(default_factory=socket.gethostname)
    host: str = Field(default_factory=socket.gethostname)
    role: Literal["primary", "standby"] = "standby"
    priority: int | None = None
    preferred: bool | None = None
    version: str = Field(default_factory=_package_version)
    # the lease is kept in whole milliseconds for at most a year (Lease's own bounds)
    lease_ttl: float = Field(default=30.0, ge=0.001, le=365 * 24 * 3600, allow_inf_nan=False)
    renew_interval: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    heartbeat_interval: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    heartbeat_retention: float = Field(default=DEFAULT_HEARTBEAT_RETENTION, gt=0, allow_inf_nan=False)
    renew_failure_threshold: int = Field(default=2, ge=1)
    history_maxlen: int = Field(default=10_000, ge=1)
    handoff_steady_intervals: int = Field(default=3, ge=1)
    log_format: Literal["auto", "json", "console"] = "auto"
    # Redis beyond one server: Sentinel (addresses + service) or Cluster, TLS files, and the
    # replication safeguard (WAIT for replicas after each acquire/renew)
    redis_sentinels: str = ""
    redis_sentinel_service: str = "mymaster"
    redis_sentinel_password: SecretStr | None = None
    redis_cluster: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    min_replicas_ack: int = Field(default=0, ge=0)
    replica_ack_timeout: float = Field(default=0.2, gt=0, allow_inf_nan=False)
    # `coordinator run -- CMD`: how the leader-only child is stopped and restarted
    child_grace: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    child_restart: Literal["on-failure", "always", "never"] = "on-failure"
    child_pass_redis_url: bool = False
    child_output_prefix: bool = False
    # a guardian process beside the daemon releases its lease the moment the daemon dies on a
    # live host (coordinator/guardian/guardian.py); off for hosts that forbid extra processes
    guardian: bool = True
    http_host: str = "127.0.0.1"
    # None (unset or empty) keeps the HTTP endpoint off; 0 asks for an ephemeral port
    http_port: int | None = Field(default=None, ge=0, le=65535)
    # off by default: a fenced write per scheduler pass for fault harnesses (coordinator.protocol.probe)
    fence_probe_key: str | None = None
    # many leases (coordinator/leases/): with none of the three set a daemon holds the one
    # lease COORDINATOR_LEASE_NAME, exactly as without them
    leases: str = ""  # names registered at start: "orders,shard-{0..63}"
    lease_selector: str = ""  # globs of the leases this daemon may hold ("*": any registered)
    capacity: int | None = Field(default=None, ge=1, le=1_000_000)  # its weight; unset: 1

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_usable(cls, value: SecretStr) -> SecretStr:
        check_redis_url(value.get_secret_value())
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_addresses(cls, value: str) -> str:
        for address in filter(None, (a.strip() for a in value.split(","))):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"must be host:port[,host:port...], got {address!r}")
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _tls_file_is_readable(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError(f"{value!r} is not a readable file")
        return value

    @field_validator("namespace", "lease_name", "fence_probe_key")
    @classmethod
    def _names_are_key_safe(cls, value: str | None) -> str | None:
        return None if value is None else _key_safe(keys.check_name, "name", value)

    @field_validator("leases", "lease_selector")
    @classmethod
    def _leases_parse(cls, value: str, info: Any) -> str:
        from coordinator.leases.names import LeaseSettingError, parse_lease_names, parse_lease_selector

        try:
            (parse_lease_names if info.field_name == "leases" else parse_lease_selector)(value)
        except LeaseSettingError as e:
            raise ValueError(e.rule) from None
        return value

    @field_validator("node_id")
    @classmethod
    def _node_id_is_key_safe(cls, value: str) -> str:
        return _key_safe(keys.check_node_id, "node id", value)

    @field_validator("host")
    @classmethod
    def _host_is_printable(cls, value: str) -> str:
        if not value or not value.isprintable() or len(value) > 255:
            raise ValueError("must be 1-255 printable characters")
        return value

    @field_validator("http_host")
    @classmethod
    def _http_host_is_an_address(cls, value: str) -> str:
        if not value or len(value) > 253 or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("must be an address or host name to listen on, e.g. 127.0.0.1")
        return value

    @field_validator("http_port", mode="before")
    @classmethod
    def _empty_http_port_is_off(cls, value: Any) -> Any:
        # an env file line "COORDINATOR_HTTP_PORT=" means "off", not "invalid"
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _intervals_fit_the_ttl(self) -> Settings:
        problem = cross_setting_problem(self)
        if problem is not None:
            raise _FieldRule(*problem)
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Sentinel addresses as (host, port) pairs; empty when Sentinel is off."""
        pairs = []
        for address in filter(None, (a.strip() for a in self.redis_sentinels.split(","))):
            host, _, port = address.rpartition(":")
            pairs.append((host.strip("[]"), int(port)))
        return pairs

    @property
    def many_leases(self) -> bool:
        """Whether this daemon places many leases (any of COORDINATOR_LEASES,
        COORDINATOR_LEASE_SELECTOR, COORDINATOR_CAPACITY set) instead of holding one."""
        return bool(self.leases.strip() or self.lease_selector.strip() or self.capacity is not None)

    @property
    def lease_names(self) -> tuple[str, ...]:
        """The names COORDINATOR_LEASES lists, expanded (its ranges), in the order given."""
        from coordinator.leases.names import parse_lease_names

        return parse_lease_names(self.leases)

    @property
    def selector(self) -> Any:
        """COORDINATOR_LEASE_SELECTOR as a ``LeaseSelector`` (every lease when unset)."""
        from coordinator.leases.names import parse_lease_selector

        return parse_lease_selector(self.lease_selector)

    @property
    def effective_capacity(self) -> int:
        """COORDINATOR_CAPACITY, or 1."""
        return 1 if self.capacity is None else self.capacity

    @property
    def effective_priority(self) -> int:
        """The configured priority, or 100 for a primary and 50 for a standby."""
        if self.priority is not None:
            return self.priority
        return 100 if self.role == "primary" else 50

    @property
    def effective_child_grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL for the child: as set, or min(5, LEASE_TTL / 3)."""
        return child_grace_or_default(self.child_grace, self.lease_ttl)

    @property
    def is_preferred(self) -> bool:
        """Whether this node should get leadership back when healthy (default: primary)."""
        return self.preferred if self.preferred is not None else self.role == "primary"

    @property
    def redis_url_redacted(self) -> str:
        """The Redis URL with any password replaced, safe for logs and status output."""
        return redact_url(self.redis_url.get_secret_value())


class _FieldRule(ValueError):
    def __init__(self, field: str, rule: str) -> None:
        super().__init__(rule)
        self.field = field


def _key_safe(check: Callable[[str, str], str], kind: str, value: str) -> str:
    """Run a ``keys`` check as a pydantic validator: its error becomes a ValueError whose
    message reads after the variable's name."""
    try:
        return check(kind, value)
    except InvalidArgumentError as e:
        raise ValueError(str(e).removeprefix(kind + " ")) from None


def load_settings(**overrides: Any) -> Settings:
    """Load settings from the environment and .env, with ``overrides`` (CLI flags) on top.

    Raises ``SettingsError`` naming the variable and the rule; secrets are never echoed.
    """
    _refuse_unknown(overrides)
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, _FieldRule):
                problems.append(f"{env_name(cause.field)}: {cause}")
                continue
            field = str(error["loc"][0]) if error["loc"] else "settings"
            shown = "" if field == "redis_url" else f" (got {error.get('input')!r})"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{env_name(field)}: {message}{shown}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def _closest(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _refuse_unknown(overrides: dict[str, Any]) -> None:
    """A misspelled setting would silently run with the default (a 30 s TTL for a user who
    believes in 2 s): refuse unknown keywords, variables and .env lines, naming the closest."""
    fields = list(Settings.model_fields)
    for name in overrides:
        if name not in Settings.model_fields:
            raise UnknownSettingError(f"unknown setting {name!r}{_closest(name, fields)}")
    variables = [env_name(f) for f in fields]
    sources = [("the environment", list(os.environ))]
    env_file = Settings.model_config.get("env_file")
    if isinstance(env_file, str) and os.path.isfile(env_file):
        from dotenv import dotenv_values  # pydantic-settings' own .env reader

        sources.append((f"{env_file} file", list(dotenv_values(env_file))))
    for where, names in sources:
        for name in names:
            upper = name.upper()
            if (upper.startswith(ENV_PREFIX) and upper not in variables
                    and upper not in CHILD_ONLY_VARIABLES):
                raise UnknownSettingError(
                    f"invalid settings: {name}: unknown variable in {where}"
                    f"{_closest(upper, variables)}")
