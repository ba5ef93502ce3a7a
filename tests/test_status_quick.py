"""``coordinator status`` on its quick path (settings without pydantic, the snapshot through the
stdlib RESP client) says exactly what the full path says, data set for data set: the same
stdout, stderr and exit status against the same real Redis. Where the quick path cannot
answer (Sentinel, TLS, an error reply, a setting it does not read) it hands over, and the
full path's own message comes out. The quick path's speed is the bench's to measure."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from coordinator.cli.flags import _NEUTRAL, COMMAND_SETTINGS
from coordinator.cli.status_settings import StatusSettings, status_settings
from coordinator.protocol import keys
from coordinator.protocol.lease import Lease
from coordinator.protocol.membership import Heartbeat
from coordinator.settings import Settings
from coordinator.settings_rules import (
    BOOLEAN_SETTINGS,
    DEFAULT_HEARTBEAT_RETENTION,
    DEFAULT_LEASE_NAME,
    DEFAULT_NAMESPACE,
    DEFAULT_REDIS_URL,
    LOG_FORMATS,
    SETTING_NAMES,
)
from tests.processes import coordinator_env
from tests.redis_server import RedisServer

NS = "coordinator"
# runs `coordinator ARGS` and writes the modules it loaded to the file named first
# (at exit: a traceback too)
_RUN = """
import atexit, sys
{patch}
from coordinator.cli.main import main
atexit.register(lambda: open(sys.argv[1], "w").write(" ".join(sorted(sys.modules))))
sys.exit(main(sys.argv[2:]))
"""
# the full path only: the quick one declines (one line, as "pass": a traceback's line
# numbers stay the same on both paths)
_FULL = "import coordinator.cli.status_quick as q; q.quick_snapshot = lambda args: None"


def test_the_reader_knows_every_setting_and_the_rules_settings_uses() -> None:
    assert tuple(Settings.model_fields) == SETTING_NAMES  # the unknown-variable refusal
    assert {name for name, f in Settings.model_fields.items()
                                if f.annotation in (bool, bool | None)} == BOOLEAN_SETTINGS
    assert typing.get_args(Settings.model_fields["log_format"].annotation) == LOG_FORMATS
    defaults = Settings.model_fields
    assert defaults["redis_url"].default.get_secret_value() == DEFAULT_REDIS_URL
    assert (defaults["namespace"].default, defaults["lease_name"].default,
            defaults["heartbeat_retention"].default) == (
        DEFAULT_NAMESPACE, DEFAULT_LEASE_NAME, DEFAULT_HEARTBEAT_RETENTION)


def _quick(environ: dict[str, str], **flags: Any) -> StatusSettings | None:
    used = COMMAND_SETTINGS["status"]
    overrides = {name: flags.get(name) for name in used}
    overrides.update({name: value for name, value in _NEUTRAL.items() if name not in used})
    return status_settings(overrides, used, environ)


def test_the_reader_reads_what_status_uses_and_ignores_what_status_overrides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    env = {"COORDINATOR_REDIS_URL": "redis://u:p%40ss@db.example:6380/2",
           "COORDINATOR_NAMESPACE": "ns", "COORDINATOR_HEARTBEAT_RETENTION": "90",
           "COORDINATOR_LEASE_TTL": "not a number",  # status overrides it: never read
           "COORDINATOR_TERM": "7", "PATH": "/bin"}
    assert _quick(env, lease_name="jobs") == StatusSettings(
        "redis://u:p%40ss@db.example:6380/2", "ns", "jobs", 90.0)
    assert _quick({}) == StatusSettings(DEFAULT_REDIS_URL, DEFAULT_NAMESPACE,
                                        DEFAULT_LEASE_NAME, DEFAULT_HEARTBEAT_RETENTION)
    assert _quick({"COORDINATOR_NAMESPACE": "from-env"}, namespace="from-flag") is not None
    assert _quick({"COORDINATOR_NAMESPACE": "x"}, namespace="y").namespace == "y"  # type: ignore[union-attr]


@pytest.mark.parametrize("env,flags", [
    ({"COORDINATOR_LEASE_TLL": "2"}, {}),                       # unknown: Settings refuses it
    ({"coordinator_namespace": "x"}, {}),                       # Settings folds the case
    ({"COORDINATOR_REDIS_SENTINELS": "127.0.0.1:26379"}, {}),
    ({}, {"redis_cluster": True}),
    ({"COORDINATOR_REDIS_URL": "rediss://127.0.0.1:6379/0"}, {}),
    ({"COORDINATOR_REDIS_URL": "redis://127.0.0.1:6379/0?db=3"}, {}),
    ({"COORDINATOR_REDIS_URL": "unix:///tmp/redis.sock"}, {}),
    ({"COORDINATOR_REDIS_URL": "redis://127.0.0.1:70000/0"}, {}),
    ({"COORDINATOR_TLS_CA_FILE": "/etc/hostname"}, {}),
    ({"COORDINATOR_HTTP_PORT": "80"}, {}),                      # read, and validated, by Settings
    ({"COORDINATOR_NAMESPACE": "a b"}, {}),
    ({"COORDINATOR_HEARTBEAT_RETENTION": "1e3"}, {}),
    ({"COORDINATOR_HEARTBEAT_RETENTION": "0.002"}, {}),         # below 3 x the neutral interval
    ({"COORDINATOR_LOG_FORMAT": "xml"}, {}),
])
def test_the_reader_leaves_to_settings_what_it_does_not_read_as_settings_would(
        env: dict[str, str], flags: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _quick(env, **flags) is None


def test_a_dotenv_file_is_left_to_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("COORDINATOR_NAMESPACE=elsewhere\n")
    assert _quick({}) is None


def _run(args: list[str], env: dict[str, str], cwd: Path, *, full: bool) -> tuple[
        int, str, str, set[str]]:
    marks = cwd / ("full.modules" if full else "quick.modules")
    done = subprocess.run(
        [sys.executable, "-c", _RUN.format(patch=_FULL if full else "pass"), str(marks), *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    loaded = set(marks.read_text().split()) if marks.exists() else set()
    # redis-py's messages may show an object's address, which no two runs share
    return done.returncode, _steady(done.stdout), re.sub(r"0x[0-9a-f]+", "0x…", done.stderr), loaded


def _steady(stdout: str) -> str:
    """stdout without what moves between two reads: Redis's clock, the lease's remaining
    time, the heartbeats' ages."""
    try:
        snapshot = json.loads(stdout)
    except ValueError:
        return re.sub(r"\d+\.\ds (left|ago)", r"N.Ns \1", stdout)
    snapshot.pop("redis_now", None)
    if snapshot.get("lease"):
        snapshot["lease"].pop("remaining_ms")
    for controller in snapshot.get("controllers", []):
        controller.pop("heartbeat_age_ms")
    return json.dumps(snapshot, sort_keys=True)


def _same_on_both_paths(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str, bool]:
    """Run ``coordinator ARGS`` on both paths; assert they print and exit alike; return
    (exit status, stdout, stderr, whether the quick path answered by itself)."""
    quick = _run(args, env, cwd, full=False)
    full = _run(args, env, cwd, full=True)
    assert quick[:3] == full[:3]
    assert "pydantic_settings" in full[3]  # the full path did run
    served = bool(quick[3]) and not quick[3] & {"pydantic_settings", "redis", "structlog"}
    return quick[0], quick[1], quick[2], served


@pytest.fixture
def plain(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    yield client
    client.flushall()
    client.close()


async def _leader_and_controllers(port: int) -> None:
    client = aioredis.Redis(port=port)
    try:
        await Lease(client, holder_id="a", holder_host="a.host", ttl=3600).acquire()
        for node, role, state in (("a", "primary", "alive"), ("b", "standby", "degraded"),
                                  ("c", "standby", "stopping")):
            await Heartbeat(client, namespace=NS, node_id=node, host=f"{node}.host", role=role,
                            priority=50, version="1", instance_id=f"{node}-1", interval=5.0,
                            retention=60).beat(state)  # type: ignore[arg-type]
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", [["--json"], []])
async def test_both_paths_agree_with_a_leader_with_none_and_with_a_corrupt_lease(
        plain: redis.Redis, redis_server: RedisServer, tmp_path: Path, mode: list[str]) -> None:
    env = coordinator_env(redis_server.url)
    status, out, _, served = _same_on_both_paths(["status", *mode], env, tmp_path)
    assert (status, served) == (0, True)
    assert "free" in out or '"lease": null' in out
    await _leader_and_controllers(redis_server.port)
    status, out, _, served = _same_on_both_paths(["status", *mode], env, tmp_path)
    assert (status, served) == (0, True)
    assert "b.host" in out and "degraded" in out
    # a lease hash with a field the coordinator cannot parse: exit 3, the rest still shown
    plain.hset(keys.lease_key(NS, "global"), "term", "garbage")
    status, out, err, served = _same_on_both_paths(["status", *mode], env, tmp_path)
    assert (status, served) == (3, True)
    assert "b.host" in out and "remedy" in out + err


@pytest.mark.parametrize("name,extra,expected", [
    ("foreign lease key (WRONGTYPE: handed over)", {}, 3),
    ("unknown variable", {"COORDINATOR_LEASE_TLL": "2"}, 2),
    ("bad name", {"COORDINATOR_NAMESPACE": "a b"}, 2),
    ("retention against the interval", {"COORDINATOR_HEARTBEAT_RETENTION": "0.002"}, 2),
    ("unreadable number", {"COORDINATOR_HEARTBEAT_RETENTION": "soon"}, 2),
    ("Sentinel", {"COORDINATOR_REDIS_SENTINELS": "127.0.0.1:1"}, 1),
    # today's full path ends in redis-py's traceback here (RedisClusterException is no
    # RedisError): the same on both paths
    ("Cluster on a plain server", {"COORDINATOR_REDIS_CLUSTER": "true"}, 1),
    ("no such database", {"COORDINATOR_REDIS_URL": "{url}/99"}, 1),
    ("TLS to a plain server", {"COORDINATOR_REDIS_URL": "rediss://127.0.0.1:{port}/0"}, 1),
    ("nothing listening", {"COORDINATOR_REDIS_URL": "redis://127.0.0.1:1/0"}, 1),
])
def test_both_paths_agree_where_the_quick_one_hands_over(
        plain: redis.Redis, redis_server: RedisServer, tmp_path: Path, name: str,
        extra: dict[str, str], expected: int) -> None:
    if name.startswith("foreign"):
        plain.set(keys.lease_key(NS, "global"), "foreign")
    base = redis_server.url.rsplit("/", 1)[0]
    env = coordinator_env(redis_server.url, **{
        k: v.format(url=base, port=redis_server.port) for k, v in extra.items()})
    status, _, err, served = _same_on_both_paths(["status", "--json"], env, tmp_path)
    assert (status, served) == (expected, False), err
    assert err.startswith("coordinator: ") or name.startswith("Cluster")


def test_both_paths_agree_for_acl_users_and_a_url_in_a_file(
        plain: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> None:
    plain.acl_setuser("status-reader", enabled=True, passwords=["+s3cret"], keys=["*"],
                      commands=["+@all"])
    plain.acl_setuser("no-config", enabled=True, passwords=["+s3cret"], keys=["*"],
                      commands=["+@all", "-config"])
    try:
        url_file = tmp_path / "url"
        env = coordinator_env(redis_server.url)
        env.pop("COORDINATOR_REDIS_URL")
        args = ["status", "--json", "--redis-url-file", str(url_file)]
        url_file.write_text(f"redis://status-reader:s3cret@127.0.0.1:{redis_server.port}/0\n")
        status, out, _, served = _same_on_both_paths(args, env, tmp_path)
        assert (status, served) == (0, True)
        assert json.loads(out)["redis"]["maxmemory_policy"] == "noeviction"
        # CONFIG GET refused: the policy is unknown on both paths (the quick one hands over)
        url_file.write_text(f"redis://no-config:s3cret@127.0.0.1:{redis_server.port}/0\n")
        status, out, _, served = _same_on_both_paths(args, env, tmp_path)
        assert (status, served) == (0, False)
        assert json.loads(out)["redis"]["maxmemory_policy"] == "unknown"
        url_file.write_text(f"redis://status-reader:wrong@127.0.0.1:{redis_server.port}/0\n")
        status, _, err, served = _same_on_both_paths(args, env, tmp_path)
        assert (status, served) == (1, False)
        assert "***" in err and "wrong" not in err
    finally:
        plain.acl_deluser("status-reader", "no-config")


def test_both_paths_agree_with_a_dotenv_file(
        plain: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("COORDINATOR_LEASE_NAME=jobs\n")
    status, out, _, served = _same_on_both_paths(
        ["status", "--json"], coordinator_env(redis_server.url), tmp_path)
    assert (status, served) == (0, False)
    assert json.loads(out)["lease_name"] == "jobs"
