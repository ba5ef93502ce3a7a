"""Settings that cannot be misspelled: an unknown keyword or COORDINATOR_* variable stops the
program with a message naming it and the closest valid name."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from coordinator.settings import SettingsError, load_settings
from tests.processes import coordinator
from tests.redis_server import RedisServer


def test_an_unknown_keyword_names_the_closest_setting() -> None:
    with pytest.raises(TypeError, match=r"lease_tll.*lease_ttl"):
        load_settings(node_id="x", lease_tll=2)


def test_an_unknown_keyword_is_also_a_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"renew_intervall.*renew_interval"):
        load_settings(renew_intervall=1)


def test_an_unknown_variable_names_the_closest_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COORDINATOR_LEASE_TLL", "2")
    with pytest.raises(SettingsError, match=r"COORDINATOR_LEASE_TLL.*COORDINATOR_LEASE_TTL"):
        load_settings(node_id="x")


def test_an_unknown_variable_in_the_env_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("COORDINATOR_HEARTBEAT_INTERVALL=1\n")
    with pytest.raises(SettingsError, match=r"COORDINATOR_HEARTBEAT_INTERVALL.*\.env"):
        load_settings(node_id="x")


def test_what_the_daemon_sets_for_its_children_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # a leader-only child may itself run `coordinator status`
    for name, value in {"COORDINATOR_TERM": "1765000000000", "COORDINATOR_NODE_ID": "a",
                        "COORDINATOR_LEASE_NAME": "global", "COORDINATOR_NAMESPACE": "ns"}.items():
        monkeypatch.setenv(name, value)
    assert load_settings().node_id == "a"


@pytest.mark.e2e
def test_a_misspelled_variable_stops_the_cli_with_exit_2(redis_server: RedisServer) -> None:
    for command in (["status"], ["run"]):
        done = coordinator(*command, redis_url=redis_server.url, timeout=20,
                           COORDINATOR_NAMESPACE="typo-check", COORDINATOR_LEASE_TLL="2")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "COORDINATOR_LEASE_TLL" in done.stderr and "COORDINATOR_LEASE_TTL" in done.stderr
    client = redis.Redis(port=redis_server.port)
    assert not client.keys("{typo-check}*")  # stopped before touching Redis
    client.close()


def test_the_cli_tells_its_version() -> None:
    import subprocess
    import sys
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-m", "coordinator", "--version"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"coordinator {version('coordinator')}"
