"""A command loads what it runs: ``coordinator status`` builds its own flags, not every other
subcommand's (whose modules bring the bench, the admin command, ...), and ``--version`` /
``--help`` load neither pydantic nor redis nor asyncio. The parser ``main`` builds (the running
subcommand filled in) must be the same parser as the whole one, subcommand for subcommand."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from coordinator.bench.scale import status_command
from coordinator.cli import main as cli
from tests.processes import coordinator_env
from tests.redis_server import RedisServer


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _helps(parser: argparse.ArgumentParser) -> list[str]:
    """The help of ``parser`` and of every subcommand under it, depth first."""
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts.extend(_helps(sub))
    return texts


def test_the_parser_of_one_subcommand_is_the_whole_parsers_for_that_subcommand(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    whole = _subparsers(cli._parser())
    assert list(whole) == list(cli._COMMANDS)
    for name in whole:
        alone = cli._parser(filled=(name,))
        assert alone.format_help() == cli._parser().format_help(), name
        assert _helps(_subparsers(alone)[name]) == _helps(whole[name]), name


def _modules_after(*args: str, url: str = "redis://127.0.0.1:1/0") -> set[str]:
    """The modules loaded once ``coordinator ARGS`` has run in a fresh interpreter."""
    code = ("import sys\nfrom coordinator.cli.main import main\n"
            f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
            "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=coordinator_env(url), timeout=30, check=False)
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


@pytest.mark.parametrize("args", [("--version",), ("--help",)])
def test_version_and_help_load_no_settings_library_no_redis_no_asyncio(
        args: tuple[str, ...]) -> None:
    loaded = _modules_after(*args)
    heavy = {"pydantic", "pydantic_settings", "redis", "asyncio", "coordinator.settings",
             "coordinator.cli.redis_admin", "coordinator.cli.bench", "coordinator.bench.options"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_status_loads_no_other_subcommands_module() -> None:
    loaded = _modules_after("status", "--json")
    assert "coordinator.watching.status" in loaded
    others = {"coordinator.cli.redis_admin", "coordinator.cli.bench", "coordinator.cli.watch",
              "coordinator.cli.handoff", "coordinator.cli.demo", "coordinator.bench"}
    assert not loaded & others, sorted(loaded & others)


@pytest.mark.parametrize("args", [("status", "--json"), ("status",)])
def test_status_on_a_plain_redis_url_loads_no_pydantic_redis_py_structlog_or_asyncio(
        redis_server: RedisServer, args: tuple[str, ...]) -> None:
    loaded = _modules_after(*args, url=redis_server.url)
    assert "coordinator.watching.status" in loaded
    heavy = {"pydantic", "pydantic_settings", "redis", "structlog", "asyncio",
             "coordinator.settings", "coordinator.connection.backend", "coordinator.logs"}
    assert not loaded & heavy, sorted(loaded & heavy)


async def test_the_bench_times_a_status_command_that_worked_and_refuses_one_that_failed(
        redis_server: RedisServer) -> None:
    took, out = await status_command(f"redis://127.0.0.1:{redis_server.port}/0", "speed-empty")
    assert took > 0 and json.loads(out)["controllers"] == []
    # nothing listens on port 1: the command exits 1, and its time is no status's time
    with pytest.raises(RuntimeError, match=r"exited 1: coordinator: cannot read status"):
        await status_command("redis://127.0.0.1:1/0", "speed-empty")
