"""`coordinator run -- CMD` under freezes, with secrets set, and through the automation modes:
real daemons, real watchdogs, real children, a real redis-server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import coordinator
from tests.redis_server import RedisServer
from tests.test_child import ROOT, _first_line, _lines

TTL, RENEW = 2.0, 0.5
START_WAIT = 20.0  # two cores shared by several sessions: start-up can be slow

WRITER = """
import os, sys, time
node, term, pid = os.environ["COORDINATOR_NODE_ID"], os.environ["COORDINATOR_TERM"], os.getpid()
with open(sys.argv[1], "a", buffering=1) as f:
    while True:
        f.write(f"{node} {term} {pid} {time.time():.6f}\\n")
        time.sleep(0.02)
"""

ENV_DUMP = """
import json, os, sys, time
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(dict(os.environ), f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""

# exits by itself (status 0) once the file it is given exists; otherwise runs on
FINISHES_ON_REQUEST = """
import os, pathlib, sys, time
done = pathlib.Path(sys.argv[1])
while not done.exists():
    time.sleep(0.02)
"""


def _marked(mark: str) -> list[int]:
    """Every process whose environment carries ``mark`` (daemons, watchdogs, children)."""
    found = []
    needle = f"LIFECYCLE_MARK={mark}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.append(int(entry))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


class Nodes:
    """`coordinator run -- CMD` daemons; every process they start carries a mark in its
    environment, so all of them are found and killed at the end, whatever group or session
    they ended up in."""

    def __init__(self, tmp_path: Path, server: RedisServer) -> None:
        self.tmp, self.server = tmp_path, server
        self.namespace = "life" + uuid.uuid4().hex[:8]
        self.mark = uuid.uuid4().hex
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("COORDINATOR_")}
        env.update(PYTHONPATH=str(ROOT), LIFECYCLE_MARK=self.mark,
                   COORDINATOR_REDIS_URL=self.server.url, COORDINATOR_NAMESPACE=self.namespace,
                   COORDINATOR_LEASE_TTL=str(TTL), COORDINATOR_RENEW_INTERVAL=str(RENEW),
                   COORDINATOR_HEARTBEAT_INTERVAL="0.5", COORDINATOR_LOG_FORMAT="json")
        env.update(extra)
        return env

    def spawn(self, node: str, command: list[str], *, own_session: bool = True,
              **extra: str) -> subprocess.Popen[bytes]:
        """A daemon in a process group of its own: as the leader of a new session, or (as a
        shell's job is) a new group in this test's session, which a SIGTSTP can stop."""
        placement: dict[str, Any] = ({"start_new_session": True} if own_session
                                     else {"process_group": 0})
        with open(self.tmp / f"{node}.out", "ab") as out, \
                open(self.tmp / f"{node}.err", "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "coordinator", "run", "--", *command],
                env=self.env(COORDINATOR_NODE_ID=node, **extra), stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, **placement)
        self.procs[node] = proc
        return proc

    def events(self, node: str, name: str) -> list[dict[str, Any]]:
        found = []
        for line in (self.tmp / f"{node}.err").read_text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("event") == name:
                    found.append(entry)
        return found

    def wait_for(self, node: str, name: str, count: int = 1, timeout: float = START_WAIT
                 ) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.events(node, name)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{node} logged {name} fewer than {count} times")

    def cli(self, *args: str) -> None:
        done = coordinator(*args, redis_url=self.server.url, COORDINATOR_NAMESPACE=self.namespace)
        assert done.returncode == 0, done.stderr

    def cleanup(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
        for pid in _marked(self.mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=10)


@pytest.fixture
def nodes(tmp_path: Path, redis_server: RedisServer) -> Iterator[Nodes]:
    made = Nodes(tmp_path, redis_server)
    try:
        yield made
    finally:
        made.cleanup()


def _writer(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return str(script), tmp_path / "lines"


# ---- 1. a frozen daemon (its whole process group) never leaves its child running ------------

FREEZES: dict[str, tuple[bool, signal.Signals]] = {
    # kill -STOP -PGID of a daemon that leads its own session
    "group SIGSTOP": (True, signal.SIGSTOP),
    # Ctrl-Z: the terminal sends SIGTSTP to its foreground job, a process group of the
    # shell's session (a group that leads a session of its own would be orphaned, and the
    # kernel drops stop signals from the keyboard to orphaned groups)
    "terminal SIGTSTP": (False, signal.SIGTSTP),
}


@pytest.mark.e2e
@pytest.mark.parametrize("freeze", list(FREEZES))
def test_a_frozen_daemon_group_leaves_no_child_running_past_the_lease(
    nodes: Nodes, tmp_path: Path, freeze: str
) -> None:
    own_session, sig = FREEZES[freeze]
    script, out = _writer(tmp_path)
    nodes.spawn("a", [sys.executable, script, str(out)], own_session=own_session)
    first = _first_line(out, after=0, timeout=START_WAIT)
    assert first[0] == "a"
    nodes.spawn("b", [sys.executable, script, str(out)], own_session=own_session)
    nodes.wait_for("b", "watchdog.started")
    time.sleep(0.5)
    (watchdog,) = nodes.events("a", "watchdog.started")
    daemon = nodes.procs["a"]

    frozen_at = time.time()
    os.killpg(daemon.pid, sig)
    time.sleep(0.3)
    assert _state(daemon.pid) == "T", "the freeze did not stop the daemon"
    watchdog_state = _state(watchdog["pid"])
    nxt = _first_line(out, after=frozen_at, not_node="a", timeout=START_WAIT)
    time.sleep(max(0.0, frozen_at + 2 * TTL + 0.5 - time.time()))  # frozen past 2 x TTL
    os.killpg(daemon.pid, signal.SIGCONT)
    time.sleep(1.0)

    lines = _lines(out)
    last_of_a = max(t for n, *_, t in lines if n == "a")
    assert last_of_a < nxt[3], (f"a's child wrote {last_of_a - nxt[3]:.3f}s after b's child "
                                "began: two children ran at once")
    assert last_of_a < frozen_at + TTL  # ended on the local deadline, before the lease expired
    assert nxt[0] == "b"
    print(f"{freeze}: a's child last wrote {last_of_a - frozen_at:.3f}s after the freeze, "
          f"b's child first {nxt[3] - frozen_at:.3f}s after it")
    # after SIGCONT the old leader stands by: it starts no child again
    assert all(t < nxt[3] for n, *_, t in lines if n == "a")
    assert daemon.poll() is None
    assert watchdog_state != "T", "the watchdog was frozen with the daemon"


@pytest.mark.e2e
def test_with_its_watchdog_frozen_a_stopping_leader_kills_its_child_before_releasing(
    nodes: Nodes, tmp_path: Path
) -> None:
    script, out = _writer(tmp_path)
    nodes.spawn("a", [sys.executable, script, str(out)])
    _first_line(out, after=0, timeout=START_WAIT)
    nodes.spawn("b", [sys.executable, script, str(out)])
    nodes.wait_for("b", "watchdog.started")
    time.sleep(0.5)
    (watchdog,) = nodes.events("a", "watchdog.started")
    os.kill(watchdog["pid"], signal.SIGSTOP)  # the watchdog alone, by its pid
    termed_at = time.time()
    nodes.procs["a"].terminate()
    nxt = _first_line(out, after=termed_at, not_node="a", timeout=START_WAIT)
    assert nodes.procs["a"].wait(timeout=15) == 0
    last_of_a = max(t for n, *_, t in _lines(out) if n == "a")
    assert last_of_a < nxt[3], f"a's child wrote {last_of_a - nxt[3]:.3f}s into b's tenure"
    assert nodes.events("a", "child.killed_by_daemon")


@pytest.mark.e2e
def test_with_its_watchdog_frozen_a_leader_cut_off_from_redis_kills_its_child_in_time(
    nodes: Nodes, tmp_path: Path
) -> None:
    from tests.chaos.proxy import ProxyHost

    script, out = _writer(tmp_path)
    proxies = ProxyHost()
    try:
        for node in "ab":
            proxy = proxies.add(node, nodes.server.port)
            nodes.spawn(node, [sys.executable, script, str(out)],
                        COORDINATOR_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
            if node == "a":
                _first_line(out, after=0, timeout=START_WAIT)
        nodes.wait_for("b", "watchdog.started")
        time.sleep(0.5)
        (watchdog,) = nodes.events("a", "watchdog.started")
        os.kill(watchdog["pid"], signal.SIGSTOP)
        cut_at = time.time()
        proxies.blackhole("a")
        nxt = _first_line(out, after=cut_at, not_node="a", timeout=START_WAIT)
        time.sleep(0.3)
        last_of_a = max(t for n, *_, t in _lines(out) if n == "a")
        assert last_of_a < nxt[3], f"a's child wrote {last_of_a - nxt[3]:.3f}s into b's tenure"
        assert last_of_a < cut_at + TTL  # killed on the local deadline, before the expiry
        os.kill(watchdog["pid"], signal.SIGCONT)
    finally:
        proxies.close()


@pytest.mark.e2e
def test_the_watchdog_runs_in_a_session_of_its_own_ignoring_stop_signals_from_terminals(
    nodes: Nodes, tmp_path: Path,
) -> None:
    nodes.spawn("s", ["sleep", "300"], own_session=False)
    (watchdog,) = nodes.wait_for("s", "watchdog.started")
    (started,) = nodes.wait_for("s", "child.started")
    daemon = nodes.procs["s"]
    assert os.getsid(watchdog["pid"]) == watchdog["pid"] != os.getsid(daemon.pid)
    # the child: a process group of its own, in the watchdog's session
    assert os.getpgid(started["pid"]) == started["pid"]
    assert os.getsid(started["pid"]) == watchdog["pid"]
    for sig in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
        os.kill(watchdog["pid"], sig)
    time.sleep(0.3)
    assert _state(watchdog["pid"]) not in ("T", "gone")
    # handlers, not SIG_IGN: the child gets the default dispositions after exec
    ignored = int(next(line for line in Path(f"/proc/{started['pid']}/status").read_text()
                       .splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    for sig in (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGINT, signal.SIGHUP):
        assert not ignored & (1 << (sig - 1)), sig.name
    # and the watchdog still goes with its daemon, taking the child along
    daemon.kill()
    daemon.wait()
    end = time.monotonic() + 5
    while time.monotonic() < end and {_state(watchdog["pid"]), _state(started["pid"])} - {
            "gone", "Z"}:
        time.sleep(0.02)
    assert _state(watchdog["pid"]) in ("gone", "Z") and _state(started["pid"]) in ("gone", "Z")


# ---- 6. no secret reaches the watchdog or the child -----------------------------------------


def _secret_settings() -> dict[str, str]:
    """Every setting that holds a secret, set to a distinctive value (the daemon still
    starts: with no Sentinel addresses the Sentinel password is not used)."""
    from coordinator.settings import Settings, env_name

    secret = {name for name, f in Settings.model_fields.items() if "SecretStr" in repr(f.annotation)}
    assert secret >= {"redis_url", "redis_sentinel_password"}
    values = {env_name(name): f"leak-{name}-{uuid.uuid4().hex[:6]}"
              for name in secret - {"redis_url"}}
    # pydantic-settings matches names in any case: a lower-case spelling is a setting too
    values["coordinator_redis_sentinel_password"] = "leak-lower-" + uuid.uuid4().hex[:6]
    return values


@pytest.mark.e2e
def test_no_secret_setting_reaches_the_watchdog_or_the_child(nodes: Nodes,
                                                             tmp_path: Path) -> None:
    secrets = _secret_settings()
    dump = tmp_path / "env.json"
    script = tmp_path / "dump.py"
    script.write_text(ENV_DUMP)
    # a password in the URL: the server's default user has none, so it takes any
    password = "leak-url-" + uuid.uuid4().hex[:6]
    url = f"redis://default:{password}@127.0.0.1:{nodes.server.port}/0"
    nodes.spawn("e", [sys.executable, str(script), str(dump)], **secrets,
                COORDINATOR_REDIS_URL=url)
    (watchdog,) = nodes.wait_for("e", "watchdog.started")
    end = time.monotonic() + START_WAIT
    while not dump.exists() and time.monotonic() < end:
        time.sleep(0.05)
    child = json.loads(dump.read_text())
    watchdog_env = Path(f"/proc/{watchdog['pid']}/environ").read_bytes().decode()
    for value in [*secrets.values(), password]:
        assert value not in json.dumps(child), value
        assert value not in watchdog_env, value
    assert child["COORDINATOR_NODE_ID"] == "e"
    assert child["COORDINATOR_NAMESPACE"] == nodes.namespace
    assert child["COORDINATOR_LEASE_NAME"] == "global"
    assert int(child["COORDINATOR_TERM"]) > 0
    assert "COORDINATOR_REDIS_URL" not in child
    assert child["LIFECYCLE_MARK"] == nodes.mark  # the rest of the environment is passed on


# ---- 8. the automation modes: paused stops the child, draining lets it finish ---------------


def _run_sentinel(tmp_path: Path) -> tuple[list[str], Path]:
    script = tmp_path / "finishes.py"
    script.write_text(FINISHES_ON_REQUEST)
    done = tmp_path / "done"
    return [sys.executable, str(script), str(done)], done


@pytest.mark.e2e
def test_draining_lets_the_child_finish_starts_no_other_and_running_starts_it_again(
    nodes: Nodes, tmp_path: Path
) -> None:
    command, done = _run_sentinel(tmp_path)
    nodes.spawn("d", command, COORDINATOR_CHILD_RESTART="always")
    (started,) = nodes.wait_for("d", "child.started")
    nodes.cli("drain")
    nodes.wait_for("d", "automation_mode.changed")
    time.sleep(0.7)
    assert _state(started["pid"]) not in ("gone", "Z"), "draining stopped the running child"
    assert nodes.events("d", "child.exited") == []
    done.touch()  # the work finishes by itself
    (exited,) = nodes.wait_for("d", "child.exited")
    assert exited["exit_status"] == 0
    done.unlink()
    time.sleep(1.5)  # three restart backoffs: still nothing while draining
    assert len(nodes.events("d", "child.started")) == 1
    assert nodes.events("d", "child.restarting") == []
    nodes.cli("resume")
    second = nodes.wait_for("d", "child.started", 2)[1]
    assert second["term"] == started["term"]
    nodes.procs["d"].terminate()
    assert nodes.procs["d"].wait(timeout=10) == 0


@pytest.mark.e2e
@pytest.mark.parametrize("policy", ["on-failure", "never"])
def test_a_child_that_exits_cleanly_while_draining_starts_again_on_running(
    nodes: Nodes, tmp_path: Path, policy: str
) -> None:
    command, done = _run_sentinel(tmp_path)
    nodes.spawn("o", command, COORDINATOR_CHILD_RESTART=policy)
    nodes.wait_for("o", "child.started")
    nodes.cli("drain")
    nodes.wait_for("o", "automation_mode.changed")
    done.touch()
    nodes.wait_for("o", "child.exited")
    done.unlink()
    time.sleep(0.5)
    assert nodes.procs["o"].poll() is None, "the drained child's exit ended the daemon"
    nodes.cli("resume")
    nodes.wait_for("o", "child.started", 2)


@pytest.mark.e2e
def test_a_tenure_that_begins_while_draining_starts_no_child_until_running(
    nodes: Nodes, tmp_path: Path
) -> None:
    nodes.cli("drain")
    nodes.spawn("t", ["sleep", "300"])
    nodes.wait_for("t", "leader.started")
    time.sleep(0.7)
    assert nodes.events("t", "child.started") == []
    nodes.cli("resume")
    nodes.wait_for("t", "child.started")


@pytest.mark.e2e
def test_paused_stops_the_child_even_while_draining_and_running_starts_it(
    nodes: Nodes, tmp_path: Path
) -> None:
    nodes.spawn("p", ["sleep", "300"])
    nodes.wait_for("p", "child.started")
    nodes.cli("drain")
    nodes.cli("pause")
    (exited,) = nodes.wait_for("p", "child.exited")
    assert exited["exit_status"] == -signal.SIGTERM
    nodes.cli("resume")
    nodes.wait_for("p", "child.started", 2)


# ---- the same term led again after a short Redis stall ---------------------------------------


@pytest.mark.e2e
def test_a_leader_that_degrades_and_renews_its_term_runs_its_child_again(
    nodes: Nodes, tmp_path: Path
) -> None:
    script, out = _writer(tmp_path)
    nodes.spawn("s", [sys.executable, script, str(out)], COORDINATOR_LEASE_TTL="4")
    (started,) = nodes.wait_for("s", "child.started")
    term = started["term"]
    # every client waits 2.5 s: two renewals fail (each times out after the renew interval,
    # 0.5 s: degraded, the child is stopped), then one goes through well before the key
    # (TTL 4 s) lapses: leader again, under the same term
    stall = subprocess.run(["redis-cli", "-p", str(nodes.server.port), "CLIENT", "PAUSE",
                            "2500", "ALL"], capture_output=True, text=True, timeout=10)
    assert stall.returncode == 0, stall.stderr
    changes = nodes.wait_for("s", "state.changed", 3)
    assert [(c["from"], c["to"]) for c in changes[1:3]] == [("leader", "degraded"),
                                                             ("degraded", "leader")], changes
    assert changes[2]["term"] == term
    renewed_at = time.time()
    again = nodes.wait_for("s", "child.started", 2, timeout=5.0)[1]
    assert again["term"] == term
    assert _first_line(out, after=renewed_at, timeout=5.0)[1] == term
    assert nodes.events("s", "child.start_cancelled") == [], "a start of the live term was refused"


# ---- nothing the child started outlives it, even out of its session -------------------------

# the child and a grandchild that left its process group and session (as a daemon does)
# both write, and both ignore SIGTERM
DAEMONIZING_WRITER = """
import os, signal, sys, time
node, term = os.environ["COORDINATOR_NODE_ID"], os.environ["COORDINATOR_TERM"]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
else:
    os.wait()
pid = os.getpid()
with open(sys.argv[1], "a", buffering=1) as f:
    while True:
        f.write(f"{node} {term} {pid} {time.time():.6f}\\n")
        time.sleep(0.02)
"""


GRANDCHILD_FAULTS = ["daemon stopped", "daemon stopped, its watchdog frozen",
                     "watchdog killed"]


@pytest.mark.e2e
@pytest.mark.parametrize("fault", GRANDCHILD_FAULTS)
def test_a_grandchild_in_a_session_of_its_own_ends_before_the_next_leaders_child_starts(
    nodes: Nodes, tmp_path: Path, fault: str
) -> None:
    script = tmp_path / "daemonizing.py"
    script.write_text(DAEMONIZING_WRITER)
    out = tmp_path / "lines"
    nodes.spawn("a", [sys.executable, str(script), str(out)])
    _first_line(out, after=0, timeout=START_WAIT)
    nodes.spawn("b", [sys.executable, str(script), str(out)])
    nodes.wait_for("b", "watchdog.started")
    time.sleep(0.5)
    assert len({pid for n, _, pid, _ in _lines(out) if n == "a"}) == 2, "no grandchild wrote"
    (watchdog,) = nodes.events("a", "watchdog.started")
    if fault == "daemon stopped, its watchdog frozen":  # the daemon's backstop must do it
        os.kill(watchdog["pid"], signal.SIGSTOP)
    began = time.time()
    if fault == "watchdog killed":  # the kernel kills the child; the daemon gives up leading
        os.kill(watchdog["pid"], signal.SIGKILL)
    else:
        nodes.procs["a"].terminate()
    nxt = _first_line(out, after=began, not_node="a", timeout=START_WAIT)
    assert nodes.procs["a"].wait(timeout=15) == (1 if fault == "watchdog killed" else 0)
    time.sleep(0.3)
    last_of_a = max(t for n, *_, t in _lines(out) if n == "a")
    assert last_of_a < nxt[3], f"a's grandchild wrote {last_of_a - nxt[3]:.3f}s into b's tenure"
