"""`coordinator run -- CMD`: the pure parts, the settings, then real daemons with real children."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from coordinator.child.child import (
    after_exit,
    child_env,
    exit_code,
    inherited_env,
    resolve_command,
    restart_delay,
)
from coordinator.cli.main import main
from coordinator.errors import InvalidArgumentError
from coordinator.protocol import keys
from coordinator.settings import SettingsError, load_settings
from coordinator.watching.status import render_child
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
TTL, RENEW = 2.0, 0.5
FAILOVER_BOUND = TTL + RENEW + 1.0 + 0.2  # the daemon issue's kill -9 bound, plus 200 ms
START_BOUND = 0.2


# ---- pure parts -----------------------------------------------------------------------------


def test_restart_policies() -> None:
    assert after_exit("on-failure", 1, signalled=False) == "restart"
    assert after_exit("on-failure", 0, signalled=False) == "done"
    assert after_exit("always", 0, signalled=False) == "restart"
    assert after_exit("never", 0, signalled=False) == "finish"
    assert after_exit("never", 3, signalled=False) == "finish"
    # the watchdog ended it for the lease's sake: the child did not choose to exit
    assert after_exit("never", -15, signalled=True) == "restart"


def test_backoff_doubles_and_is_capped() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert restart_delay(50) == 30.0


def test_exit_codes_read_as_a_shell_reads_them() -> None:
    assert (exit_code(0), exit_code(3), exit_code(-signal.SIGKILL)) == (0, 3, 137)


def test_commands_are_resolved_before_anything_starts(tmp_path: Path) -> None:
    found = resolve_command(["sh", "-c", "true"])
    assert os.path.isabs(found.executable) and found.argv == ("sh", "-c", "true")
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    cases = {"no-such-program-here": "not found on PATH", str(tmp_path / "gone"): "no such file",
             str(tmp_path): "is a directory", str(plain): "not executable"}
    for name, reason in cases.items():
        with pytest.raises(InvalidArgumentError, match=reason):
            resolve_command([name])
    with pytest.raises(InvalidArgumentError, match="no command"):
        resolve_command([])


def test_the_child_learns_its_term_and_the_redis_url_only_on_request() -> None:
    url = "redis://:secret@127.0.0.1:6379/0"
    s = load_settings(node_id="a", namespace="ns", lease_name="jobs", redis_url=url)
    assert child_env(s, 9) == {"COORDINATOR_TERM": "9", "COORDINATOR_NODE_ID": "a",
                               "COORDINATOR_LEASE_NAME": "jobs", "COORDINATOR_NAMESPACE": "ns"}
    opted = load_settings(node_id="a", redis_url=url, child_pass_redis_url=True)
    assert child_env(opted, 9)["COORDINATOR_REDIS_URL"] == url
    assert inherited_env({"COORDINATOR_REDIS_URL": url, "PATH": "/bin"}) == {"PATH": "/bin"}


def test_no_coordinator_setting_is_passed_on_in_any_spelling() -> None:
    from coordinator.settings import Settings, env_name

    environ = {env_name(name): "x" for name in Settings.model_fields}
    environ |= {"coordinator_redis_sentinel_password": "s", "Coordinator_Redis_Url": "u",
                "PATH": "/bin", "MY_COORDINATOR_HOME": "/srv"}
    assert inherited_env(environ) == {"PATH": "/bin", "MY_COORDINATOR_HOME": "/srv"}


def test_grace_defaults_to_a_third_of_the_ttl_up_to_five_seconds() -> None:
    assert load_settings(lease_ttl=2, renew_interval=0.5).effective_child_grace == pytest.approx(
        2 / 3)
    assert load_settings().effective_child_grace == 5.0  # TTL 30


def test_a_grace_that_leaves_no_room_for_renewals_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SettingsError, match="COORDINATOR_CHILD_GRACE: must be below"):
        load_settings(lease_ttl=2, renew_interval=0.5, child_grace=1.5)
    status = main(["run", "--lease-ttl", "2", "--renew-interval", "0.5", "--child-grace", "1.5",
                   "--", "true"])
    assert status == 2 and "COORDINATOR_CHILD_GRACE" in capsys.readouterr().err


def test_status_shows_each_nodes_child() -> None:
    assert render_child({"running": True, "pid": 42, "term": 3, "restarts": 1}) == (
        "child running, pid 42, term 3, 1 restarts")
    assert render_child({"running": False, "last_exit_status": 1, "restarts": 0}) == (
        "child not running (last exit status 1), 0 restarts")


def test_only_run_takes_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--", "true"]) == 2
    assert "only `coordinator run`" in capsys.readouterr().err


# ---- real daemons, real children, real redis-server ----------------------------------------

WRITER = """
import os, sys, time
node, term, pid = os.environ["COORDINATOR_NODE_ID"], os.environ["COORDINATOR_TERM"], os.getpid()
with open(sys.argv[1], "a", buffering=1) as f:
    while True:
        f.write(f"{node} {term} {pid} {time.time():.6f}\\n")
        time.sleep(0.02)
"""

STUBBORN_WRITER = """
import os, signal, sys, time
term_at = []
signal.signal(signal.SIGTERM, lambda *_: term_at.append(time.time()))
with open(sys.argv[1], "a", buffering=1) as f:
    while True:
        f.write(f"{os.getpid()} {time.time():.6f} {term_at[0] if term_at else 0}\\n")
        time.sleep(0.01)
"""

FAILS_ONCE = """
import pathlib, sys, time
count = pathlib.Path(sys.argv[1])
runs = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(runs))
if runs == 1:
    sys.exit(1)
print("second run, term", __import__("os").environ["COORDINATOR_TERM"], flush=True)
time.sleep(300)
"""


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
                    members.append(int(entry))
    return members


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


class Cluster:
    """`coordinator run -- ...` processes, each in a session of its own, so that every
    process one of them starts (the child's helpers too) can be found and killed at the
    end whatever happened; the watchdog and the child, in a session of the watchdog's,
    are found by the pids the daemon logged."""

    def __init__(self, tmp_path: Path, server: RedisServer, namespace: str) -> None:
        self.tmp, self.server, self.namespace = tmp_path, server, namespace
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, node: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        full_env = {
            **os.environ, "PYTHONPATH": str(ROOT), "COORDINATOR_REDIS_URL": self.server.url,
            "COORDINATOR_NAMESPACE": self.namespace, "COORDINATOR_NODE_ID": node,
            "COORDINATOR_LEASE_TTL": str(TTL), "COORDINATOR_RENEW_INTERVAL": str(RENEW),
            "COORDINATOR_HEARTBEAT_INTERVAL": "0.5", "COORDINATOR_LOG_FORMAT": "json", **env,
        }
        with open(self.tmp / f"{node}.out", "ab") as out, \
                open(self.tmp / f"{node}.err", "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator", "run", "--", *command], env=full_env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        self.procs[node] = proc
        return proc

    def log(self, node: str) -> list[dict[str, Any]]:
        events = []
        for line in (self.tmp / f"{node}.err").read_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def events(self, node: str, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log(node) if e.get("event") == name]

    def cleanup(self) -> None:
        for node, proc in self.procs.items():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
            # the watchdog leads a session of its own, its children a group each
            logged = [(os.killpg, e["pid"]) for e in self.events(node, "child.started")]
            logged += [(os.kill, e["pid"]) for e in self.events(node, "watchdog.started")]
            for kill, pid in logged:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGCONT)
                    kill(pid, signal.SIGKILL)
            for pid in _session_members(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer) -> Iterator[Cluster]:
    namespace = "child" + uuid.uuid4().hex[:8]
    made = Cluster(tmp_path, redis_server, namespace)
    try:
        yield made
    finally:
        made.cleanup()


def _lines(path: Path) -> list[tuple[str, int, int, float]]:
    """Complete ``node term pid time`` lines of the shared file."""
    if not path.exists():
        return []
    text = path.read_text()
    return [(n, int(t), int(p), float(w))
            for n, t, p, w in (line.split() for line in text[:text.rfind("\n") + 1].splitlines())]


def _first_line(path: Path, *, after: float, not_node: str | None = None,
                timeout: float = 8.0) -> tuple[str, int, int, float]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in _lines(path):
            if line[3] > after and line[0] != not_node:
                return line
        time.sleep(0.02)
    raise AssertionError(f"no child wrote after {after} (other than {not_node})")


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    began = time.monotonic()
    status = proc.wait(timeout=timeout)
    return status, time.monotonic() - began


def _keys(server: RedisServer, pattern: str) -> list[bytes]:
    client = sync_redis.Redis(port=server.port)
    try:
        return list(client.scan_iter(match=pattern))
    finally:
        client.close()


@pytest.mark.e2e
def test_three_daemons_never_run_two_children_at_once(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "lines"
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    for node in "abc":
        cluster.spawn(node, [sys.executable, str(writer), str(out)])
    first = _first_line(out, after=0)
    time.sleep(0.5)
    gaps: dict[str, float] = {}

    # 1. kill -9 the leader's daemon: its watchdog ends the child at once, another takes over
    leader = _lines(out)[-1][0]
    killed_at = time.time()
    cluster.procs[leader].kill()
    nxt = _first_line(out, after=killed_at, not_node=leader)
    gaps["kill -9"] = nxt[3] - killed_at
    assert max(t for n, *_, t in _lines(out) if n == leader) < killed_at + 0.1
    time.sleep(0.5)

    # 2. freeze the new leader past the TTL: its watchdog ends the child before the lease
    # can pass on; after SIGCONT the old leader does not start its child again
    frozen = nxt[0]
    frozen_at = time.time()
    cluster.procs[frozen].send_signal(signal.SIGSTOP)
    nxt = _first_line(out, after=frozen_at, not_node=frozen)
    gaps["SIGSTOP"] = nxt[3] - frozen_at
    time.sleep(max(0.0, frozen_at + TTL + 1 - time.time()))
    cluster.procs[frozen].send_signal(signal.SIGCONT)
    resumed_at = time.time()
    time.sleep(1.0)
    frozen_lines = [t for n, *_, t in _lines(out) if n == frozen]
    assert max(frozen_lines) < frozen_at + TTL  # gone before its lease could end
    assert [e["to"] for e in cluster.events(frozen, "state.changed")][-1] != "leader"

    # 3. SIGTERM the leader: the child first, then the lease; the last node takes over
    leader = nxt[0]
    termed_at = time.time()
    cluster.procs[leader].terminate()
    status, took = _wait_exit(cluster.procs[leader], 10)
    nxt = _first_line(out, after=termed_at, not_node=leader)
    gaps["SIGTERM"] = nxt[3] - termed_at
    assert status == 0 and took < cluster_grace() + 1
    assert nxt[0] == frozen and nxt[3] > resumed_at

    time.sleep(0.3)
    cluster.procs[frozen].terminate()
    _wait_exit(cluster.procs[frozen], 10)

    lines = _lines(out)
    spans: dict[int, tuple[str, int, float, float]] = {}
    for node, term, pid, t in lines:
        n, tm, lo, _ = spans.get(pid, (node, term, t, t))
        assert (n, tm) == (node, term)  # one child, one term
        spans[pid] = (n, tm, lo, t)
    ordered = sorted(spans.values(), key=lambda s: s[2])
    for before, after in itertools.pairwise(ordered):
        assert after[2] >= before[3] - 0.005, f"{before} and {after} overlap"
        assert after[1] > before[1], "terms went down or repeated across children"
    terms_in_file_order = [term for _, term, _, _ in lines]
    assert terms_in_file_order == sorted(terms_in_file_order)
    assert len(ordered) == 4 and first[0] == ordered[0][0]

    # CMD is started (the watchdog reported its pid) within 200 ms of leadership; its first
    # line also counts the child's own interpreter start-up, on two shared cores
    spawned, first_lines = [], []
    for node in "abc":
        for event in cluster.events(node, "leader.started"):
            mine = [t for n, tm, _, t in lines if n == node and tm == event["term"]]
            if mine:
                (reported,) = [e for e in cluster.events(node, "child.started")
                               if e["term"] == event["term"]]
                spawned.append(_ts(reported) - _ts(event))
                first_lines.append(min(mine) - _ts(event))
    assert len(spawned) == 4 and max(spawned) < START_BOUND
    assert max(first_lines) < START_BOUND + 0.3
    assert max(gaps.values()) < FAILOVER_BOUND
    figures = {"cmd_started_after_leading_s": [round(s, 3) for s in spawned],
               "first_line_after_leading_s": [round(s, 3) for s in first_lines],
               "new_child_after_event_s": {k: round(v, 3) for k, v in gaps.items()},
               "sigterm_exit_s": round(took, 3),
               "idle_between_children_s": [round(b[2] - a[3], 3)
                                           for a, b in itertools.pairwise(ordered)]}
    print("figures:", json.dumps(figures))


def cluster_grace() -> float:
    return min(5.0, TTL / 3)


@pytest.mark.e2e
def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_before_the_release(
    cluster: Cluster, tmp_path: Path
) -> None:
    out = tmp_path / "lines"
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(STUBBORN_WRITER)
    proc = cluster.spawn("solo", [sys.executable, str(stubborn), str(out)],
                         COORDINATOR_CHILD_GRACE="0.5")
    end = time.monotonic() + 8
    while not out.exists() and time.monotonic() < end:
        time.sleep(0.02)
    time.sleep(0.2)
    termed_at = time.time()
    proc.terminate()
    status, took = _wait_exit(proc, 10)
    rows = [line.split() for line in out.read_text().splitlines() if line.count(" ") == 2]
    pid, last_line, got_term = int(rows[-1][0]), float(rows[-1][1]), float(rows[-1][2])
    assert status == 0 and took < 0.5 + 1
    assert 0 < got_term - termed_at < 0.2  # SIGTERM at once ...
    assert termed_at + 0.5 - 0.05 < last_line < termed_at + 0.5 + 0.1  # ... SIGKILL at grace
    (exited,) = cluster.events("solo", "child.exited")
    (released,) = cluster.events("solo", "lease.released")
    assert exited["exit_status"] == -signal.SIGKILL and exited["pid"] == pid
    assert _ts(exited) <= _ts(released)
    assert _keys(cluster.server, keys.lease_key(cluster.namespace, "global")) == []


@pytest.mark.e2e
def test_a_command_that_cannot_run_exits_2_before_any_lease(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    proc = cluster.spawn("x", [str(tmp_path / "no-such-program")])
    status, _ = _wait_exit(proc, 10)
    assert status == 2
    err = (tmp_path / "x.err").read_text()
    assert "cannot run" in err and "no such file" in err
    assert _keys(cluster.server, f"*{cluster.namespace}*") == []  # not even a heartbeat


@pytest.mark.e2e
def test_a_failing_child_is_restarted_and_status_shows_it(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    script = tmp_path / "fails_once.py"
    script.write_text(FAILS_ONCE)
    proc = cluster.spawn("r", [sys.executable, str(script), str(tmp_path / "count")],
                         COORDINATOR_CHILD_OUTPUT_PREFIX="true")
    end = time.monotonic() + 8
    while len(cluster.events("r", "child.started")) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.6)  # a heartbeat carries the child's state to Redis
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COORDINATOR_REDIS_URL": cluster.server.url,
           "COORDINATOR_NAMESPACE": cluster.namespace}
    shown = subprocess.run([sys.executable, "-m", "coordinator", "status", "--json"], env=env,
                           capture_output=True, text=True, timeout=10, check=True)
    (controller,) = json.loads(shown.stdout)["controllers"]
    child = controller["metadata"]["child"]
    assert (child["running"], child["restarts"], child["last_exit_status"]) == (True, 1, 1)
    proc.terminate()
    assert _wait_exit(proc, 10)[0] == 0
    assert [e["exit_status"] for e in cluster.events("r", "child.exited")] == [1, -signal.SIGTERM]
    assert "[r] second run, term 1" in (tmp_path / "r.out").read_text()


@pytest.mark.e2e
def test_with_restart_never_the_daemon_exits_with_the_childs_status(cluster: Cluster) -> None:
    proc = cluster.spawn("n", ["sh", "-c", "sleep 0.2; exit 3"], COORDINATOR_CHILD_RESTART="never")
    status, _ = _wait_exit(proc, 10)
    assert status == 3
    assert cluster.events("n", "lease.released")[0]["released"] is True


@pytest.mark.e2e
def test_pause_stops_the_child_and_resume_starts_it_again(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    proc = cluster.spawn("p", ["sleep", "300"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COORDINATOR_REDIS_URL": cluster.server.url,
           "COORDINATOR_NAMESPACE": cluster.namespace}

    def wait_for(name: str, count: int) -> None:
        end = time.monotonic() + 8
        while len(cluster.events("p", name)) < count and time.monotonic() < end:
            time.sleep(0.02)
        assert len(cluster.events("p", name)) >= count, name

    wait_for("child.started", 1)
    subprocess.run([sys.executable, "-m", "coordinator", "pause"], env=env, check=True,
                   capture_output=True, timeout=10)
    wait_for("child.exited", 1)
    time.sleep(0.7)  # past the first restart backoff: still nothing while paused
    assert len(cluster.events("p", "child.started")) == 1
    subprocess.run([sys.executable, "-m", "coordinator", "resume"], env=env, check=True,
                   capture_output=True, timeout=10)
    wait_for("child.started", 2)
    proc.terminate()
    assert _wait_exit(proc, 10)[0] == 0


@pytest.mark.e2e
def test_a_leader_cut_off_from_redis_stops_its_child_before_another_starts(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Each daemon reaches Redis through a proxy of its own; the leader's is blackholed."""
    from tests.chaos.proxy import ProxyHost

    out = tmp_path / "lines"
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    proxies = ProxyHost()
    try:
        for node in "abc":
            proxy = proxies.add(node, cluster.server.port)
            cluster.spawn(node, [sys.executable, str(writer), str(out)],
                          COORDINATOR_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
        _first_line(out, after=0)
        time.sleep(0.5)
        leader = _lines(out)[-1][0]
        cut_at = time.time()
        proxies.blackhole(leader)
        nxt = _first_line(out, after=cut_at, not_node=leader)
        time.sleep(0.5)
        last_of_cut = max(t for n, *_, t in _lines(out) if n == leader)
        print(f"cut-off leader's child: last line {last_of_cut - cut_at:.3f}s after the cut, "
              f"next child's first line {nxt[3] - cut_at:.3f}s after it")
        assert last_of_cut < nxt[3], "the cut-off leader's child still ran when the next began"
        assert last_of_cut < cut_at + TTL  # stopped on the local deadline, before expiry
        assert nxt[3] - cut_at < FAILOVER_BOUND
        proxies.heal(leader, cut=True)
        time.sleep(1.5)  # healed: it rejoins as a standby and starts no child
        lines = _lines(out)
        assert max(t for n, *_, t in lines if n == leader) == last_of_cut
        terms = [term for _, term, _, _ in lines]
        assert terms == sorted(terms)
        assert cluster.procs[leader].poll() is None  # the cut never made the daemon exit
    finally:
        proxies.close()
