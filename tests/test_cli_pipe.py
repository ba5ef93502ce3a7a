"""``coordinator status | head -1`` and ``coordinator watch | head -1``: a reader that goes away
early ends the command quietly (exit 0, nothing on stderr), as `cat` or `grep` do, never with
a BrokenPipeError traceback. The pipes are real: their read end is closed before the command
writes, so the first write fails with EPIPE every time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.processes import coordinator, coordinator_env
from tests.redis_server import RedisServer


@pytest.fixture
def closed_pipe() -> Iterator[int]:
    """The write end of a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    yield write_end
    os.close(write_end)


def _url(server: RedisServer) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("args", [("status",), ("status", "--json")])
@pytest.mark.parametrize("buffered", [True, False])
def test_status_into_a_pipe_whose_reader_is_gone_exits_quietly(
        redis_server: RedisServer, closed_pipe: int, args: tuple[str, ...],
        buffered: bool) -> None:
    env = coordinator_env(_url(redis_server), COORDINATOR_NAMESPACE="pipe")
    # buffered, the write fails at the last flush (at exit); unbuffered, in print() itself
    env.pop("PYTHONUNBUFFERED", None)
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run([sys.executable, "-m", "coordinator", *args], stdout=closed_pipe,
                          stderr=subprocess.PIPE, text=True, timeout=30, check=False, env=env)
    assert done.stderr == ""
    assert done.returncode == 0


@pytest.mark.parametrize("args", [("watch",), ("watch", "--json")])
def test_watch_into_a_pipe_whose_reader_is_gone_exits_quietly_at_its_first_event(
        redis_server: RedisServer, closed_pipe: int, args: tuple[str, ...]) -> None:
    url = _url(redis_server)
    watcher = subprocess.Popen([sys.executable, "-m", "coordinator", *args], stdout=closed_pipe,
                               stderr=subprocess.PIPE, text=True,
                               env=coordinator_env(url, COORDINATOR_NAMESPACE="pipe-watch"))
    try:
        deadline = time.monotonic() + 20
        mode = "pause"
        # the watcher subscribes at some point after it starts: change the mode until it
        # has seen (and failed to print) one of the changes
        while watcher.poll() is None and time.monotonic() < deadline:
            coordinator(mode, redis_url=url, COORDINATOR_NAMESPACE="pipe-watch")
            mode = "resume" if mode == "pause" else "pause"
            time.sleep(0.2)
        assert watcher.poll() is not None, "watch never noticed its reader was gone"
        stderr = watcher.stderr.read() if watcher.stderr else ""
        assert stderr == ""
        assert watcher.returncode == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
        watcher.wait()
        if watcher.stderr:
            watcher.stderr.close()


def test_a_broken_pipe_that_is_not_stdouts_is_still_a_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from coordinator.cli import main as cli

    async def broken(*args: object, **kwargs: object) -> int:
        raise BrokenPipeError(32, "a pipe of the command's own")

    # stdout here is pytest's capture file, whose reader is not gone
    monkeypatch.setattr(cli, "_status", broken)
    with pytest.raises(BrokenPipeError):
        cli.main(["status"])
