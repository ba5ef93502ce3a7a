"""The command line: each subcommand lists only its flags, no secret is a flag, booleans are
--flag/--no-flag, help is plain words, and a command does not refuse settings it never uses."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from coordinator.cli import main as cli
from coordinator.settings import Settings

SUBCOMMANDS = ["run", "status", "watch", "events", "pause", "drain", "resume", "demo",
               "handoff", "bench"]


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def test_status_lists_only_the_flags_it_uses() -> None:
    status = flags(subparsers()["status"])
    assert "--child-grace" not in status and "--lease-ttl" not in status
    assert "--http-port" not in status and "--node-id" not in status
    assert {"--json", "--namespace", "--lease-name", "--redis-sentinels"} <= status
    for name in ("pause", "drain", "resume", "watch", "events"):
        assert "--child-grace" not in flags(subparsers()[name]), name
    assert "--child-grace" in flags(subparsers()["run"])


def test_no_secret_is_a_flag() -> None:
    for name, parser in subparsers().items():
        assert "--redis-sentinel-password" not in flags(parser), name


def test_a_redis_url_with_a_password_is_refused_as_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--redis-url", "redis://:hunter2@127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert "hunter2" not in err and "COORDINATOR_REDIS_URL" in err


def test_booleans_are_flag_or_no_flag_without_a_value() -> None:
    run = subparsers()["run"]
    for field, info in Settings.model_fields.items():
        if info.annotation not in (bool, bool | None):
            continue
        flag = "--" + field.replace("_", "-")
        action = next(a for a in run._actions if flag in a.option_strings)
        assert "--no-" + flag[2:] in action.option_strings, flag
        assert action.nargs == 0, flag
    args = run.parse_args(["--redis-cluster"])
    assert args.redis_cluster is True
    assert run.parse_args(["--no-child-output-prefix"]).child_output_prefix is False
    assert run.parse_args([]).redis_cluster is None  # unset: the environment decides


def test_help_is_plain_words(capsys: pytest.CaptureFixture[str]) -> None:
    for name, parser in subparsers().items():
        text = parser.format_help()
        assert "``" not in text, name
    assert "``" not in cli._parser().format_help()


def test_status_does_not_refuse_a_ttl_renew_combination_it_never_uses(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COORDINATOR_LEASE_TTL", "1")
    monkeypatch.setenv("COORDINATOR_RENEW_INTERVAL", "5")
    monkeypatch.setenv("COORDINATOR_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    status = cli.main(["status", "--json"])
    err = capsys.readouterr().err
    assert "RENEW_INTERVAL" not in err
    assert status == 1  # it got as far as Redis
    # the daemon still refuses it, before touching Redis
    assert cli.main(["run"]) == 2
    assert "COORDINATOR_RENEW_INTERVAL" in capsys.readouterr().err


def test_a_setting_flag_still_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COORDINATOR_NAMESPACE", "from-env")
    args: Any = cli._parser().parse_args(["status", "--namespace", "flagged"])
    assert cli._settings_from(args).namespace == "flagged"


def test_status_imports_neither_the_daemon_nor_the_event_models_nor_the_bench() -> None:
    import subprocess
    import sys

    from tests.processes import coordinator_env

    code = ("import sys\nfrom coordinator.cli.main import main\nmain(['status', '--json'])\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('coordinator'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=coordinator_env("redis://127.0.0.1:1/0"), timeout=30, check=False)
    loaded = set(done.stdout.split())
    assert "coordinator.watching.status" in loaded, done.stderr
    heavy = {"coordinator.daemon.daemon", "coordinator.protocol.event_models", "coordinator.child.child",
             "coordinator.watching.watch", "coordinator.watching.history", "coordinator.bench.runner",
             "coordinator.daemon.threaded", "coordinator.child.watchdog"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_a_password_in_the_urls_query_is_refused_as_a_flag_and_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from coordinator.settings import redact_url

    assert cli.main(["status", "--redis-url", "redis://127.0.0.1:1/0?password=hunter2"]) == 2
    assert "hunter2" not in capsys.readouterr().err
    for url in ("redis://127.0.0.1:1/0?password=hunter2",
                "redis://127.0.0.1:1/0?db=1&password=hunter2&x=1",
                "redis://u:hunter2@127.0.0.1:1/0?password=hunter2"):
        assert "hunter2" not in redact_url(url), url
