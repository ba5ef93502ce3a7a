"""The daemons of a chaos run: ``coordinator run`` processes, each behind its own proxy.

Each node's processes ("incarnations") log JSON lines to a file of their own. Every daemon
runs ``coordinator run -- python -m tests.chaos.child`` (the child records when it runs, see
``tests/chaos/child.py``) in a session of its own, so its process group is the daemon and
whatever it did not put elsewhere (today: its watchdog). Where
libfaketime is installed, every daemon runs under it with its own time file, so the harness
can move one daemon's wall clock while the process runs (the monotonic clock is left alone:
``FAKETIME_DONT_FAKE_MONOTONIC=1``).
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chaos.recording import TICK_GAP_MS, ChildRun, Incarnation, ProbeWrite, Tenure
from tests.processes import coordinator_env

PROBE_NAME = "probe"
_LIBFAKETIME = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                "/usr/lib/*/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1")


def forget_faketime(pid: int) -> None:
    """Remove the shared memory libfaketime leaves in /dev/shm for an ended process ``pid``:
    it never cleans up after a killed process (nor, here, after a normal exit), and a new
    process that gets the same pid would fail to start with "shm_open failed: File exists"."""
    for name in (f"/dev/shm/faketime_shm_{pid}", f"/dev/shm/sem.faketime_sem_{pid}"):
        with contextlib.suppress(OSError):
            Path(name).unlink()


def now_ms() -> int:
    """The harness's wall clock in ms (the same clock as Redis's TIME: same host, not faked)."""
    return time.time_ns() // 1_000_000


def find_libfaketime() -> str | None:
    """The path of libfaketime.so.1 (Debian: apt-get install faketime), or None."""
    for pattern in _LIBFAKETIME:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@dataclass
class _Process:
    record: Incarnation
    popen: subprocess.Popen[bytes]
    log_path: Path


class Cluster:
    """Starts, signals, restarts and finally collects the daemons; ``close`` leaves none."""

    def __init__(self, workdir: Path, nodes: list[str], urls: dict[str, str],
                 settings_env: dict[str, str], libfaketime: str | None, *,
                 child: bool = True) -> None:
        self.workdir = workdir
        self._child = child  # False (many leases): ``coordinator run`` alone, the probe only
        self.nodes = nodes
        self._urls = urls
        self.children_dir = workdir / "children"
        self.children_dir.mkdir(parents=True, exist_ok=True)
        self._env = settings_env
        self._libfaketime = libfaketime
        self._processes: dict[str, list[_Process]] = {n: [] for n in nodes}

    # ---- processes ---------------------------------------------------------------------

    def start(self, node: str) -> None:
        """Start a new incarnation of ``node`` (its previous one must have ended)."""
        number = len(self._processes[node])
        log_path = self.workdir / f"{node}.{number}.log"
        env = coordinator_env(self._urls[node], COORDINATOR_NODE_ID=node,
                              COORDINATOR_FENCE_PROBE_KEY=PROBE_NAME,
                              COORDINATOR_CHILD_PASS_REDIS_URL="true",
                              CHAOS_CHILD_DIR=str(self.children_dir), **self._env)
        if self._libfaketime is not None:
            clock_file = self.clock_file(node)
            if not clock_file.exists():
                clock_file.write_text("+0\n")
            env.update(LD_PRELOAD=self._libfaketime, FAKETIME_TIMESTAMP_FILE=str(clock_file),
                       FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1")
        with log_path.open("wb") as log:
            command = [sys.executable, "-m", "coordinator", "run"]
            if self._child:
                command += ["--", sys.executable, "-m", "tests.chaos.child"]
            popen = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._processes[node].append(
            _Process(Incarnation(node, number, now_ms()), popen, log_path))

    def current(self, node: str) -> _Process | None:
        procs = self._processes[node]
        return procs[-1] if procs else None

    def running(self, node: str) -> bool:
        proc = self.current(node)
        return proc is not None and proc.record.ended_ms is None and proc.popen.poll() is None

    def pid(self, node: str) -> int:
        proc = self.current(node)
        if proc is None:
            raise LookupError(node)
        return proc.popen.pid

    def send(self, node: str, sig: int) -> None:
        """Send ``sig`` (SIGSTOP, SIGCONT) to the running incarnation of ``node``."""
        proc = self.current(node)
        if proc is not None and proc.popen.poll() is None:
            proc.popen.send_signal(sig)

    def send_group(self, node: str, sig: int) -> None:
        """Send ``sig`` to the process group of ``node``'s running daemon (its session)."""
        proc = self.current(node)
        if proc is not None and proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.popen.pid, sig)

    def latest_child(self, node: str) -> dict[str, Any] | None:
        """The start line of ``node``'s newest child still alive (pid, ppid = its watchdog)."""
        best: dict[str, Any] | None = None
        for path in self.children_dir.glob(f"child-{node}-*.jsonl"):
            lines = _json_lines(path)
            if not lines or lines[0].get("e") != "start" or not _alive(int(lines[0]["pid"])):
                continue
            if best is None or lines[0]["t"] > best["t"]:
                best = lines[0]
        return best

    def kill(self, node: str) -> None:
        """kill -9 every process of the running incarnation of ``node`` (a dead host: all are
        stopped first, so none sees another die, then killed) and reap the daemon."""
        proc = self.current(node)
        if proc is None or proc.record.ended_ms is not None:
            return
        latest: dict[str, int] = {}  # the newest of each: older ones are gone, their pids not ours
        for e in _json_lines(proc.log_path):
            if e.get("event") in ("guardian.started", "watchdog.started", "child.started") \
                    and isinstance(e.get("pid"), int):
                latest[e["event"]] = e["pid"]
        # a host that loses power: nothing of it runs on to see the others die (the daemon
        # would log guardian.lost, the guardian would release), so all stop, then all die
        pids = [latest[e] for e in ("guardian.started", "watchdog.started", "child.started")
                if e in latest]
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in [proc.popen.pid, *pids] if sig is signal.SIGSTOP else pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        self.kill_daemon(node)

    def kill_daemon(self, node: str) -> None:
        """kill -9 the daemon's pid only (a process crash) and reap it."""
        proc = self.current(node)
        if proc is None or proc.record.ended_ms is not None:
            return
        proc.record.stopped_by = "kill"
        with contextlib.suppress(ProcessLookupError):
            proc.popen.kill()
        proc.record.exit_code = proc.popen.wait(timeout=10)
        self._ended(proc)

    def terminate(self, node: str, timeout: float = 3.0) -> None:
        """SIGTERM ``node``; kill -9 it if it has not exited within ``timeout``."""
        proc = self.current(node)
        if proc is None or proc.record.ended_ms is not None:
            return
        proc.record.stopped_by = "term"
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(signal.SIGCONT)
            proc.popen.terminate()
        try:
            proc.record.exit_code = proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.record.exit_code = proc.popen.wait(timeout=10)
        self._ended(proc)

    def reap_unexpected(self) -> list[str]:
        """Nodes whose running incarnation exited without being told to (recorded as such)."""
        gone = []
        for node in self.nodes:
            proc = self.current(node)
            if proc is not None and proc.record.ended_ms is None and proc.popen.poll() is not None:
                proc.record.exit_code = proc.popen.returncode
                self._ended(proc)
                gone.append(node)
        return gone

    def mark_ready(self) -> bool:
        """Note the incarnations that logged ``daemon.started``; True if every running one has."""
        ready = True
        for node in self.nodes:
            proc = self.current(node)
            if proc is None or proc.record.ended_ms is not None:
                ready = False
                continue
            if proc.record.ready_ms is None:
                if b'"daemon.started"' in proc.log_path.read_bytes():
                    proc.record.ready_ms = now_ms()
                else:
                    ready = False
        return ready

    def set_clock(self, node: str, offset_s: float) -> None:
        """Move ``node``'s wall clock ``offset_s`` seconds from the real one (0: back to real)."""
        text = f"{offset_s:+.0f}\n"
        tmp = self.clock_file(node).with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.clock_file(node))  # atomic: libfaketime never reads half a line

    def clock_file(self, node: str) -> Path:
        return self.workdir / f"faketime-{node}.rc"

    def stop_all(self) -> None:
        """SIGTERM every running daemon (the run's end)."""
        for node in self.nodes:
            self.terminate(node)

    def close(self) -> None:
        """Leave no process behind, whatever happened (SIGCONT first: a stopped one lingers)."""
        for path in self.children_dir.glob("child-*.jsonl"):  # a child left stopped or orphaned
            lines = _json_lines(path)
            if lines and lines[0].get("e") == "start":
                for pid in (int(lines[0]["pid"]), int(lines[0]["ppid"])):
                    if _alive(pid):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(pid, signal.SIGCONT)
        for procs in self._processes.values():
            for proc in procs:
                if proc.popen.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.popen.pid, signal.SIGCONT)
                        proc.popen.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=10)
                if proc.record.ended_ms is None:
                    proc.record.exit_code = proc.popen.returncode
                    proc.record.stopped_by = proc.record.stopped_by or "kill"
                    proc.record.ended_ms = now_ms()
                if proc.popen.returncode is not None and self._libfaketime is not None:
                    forget_faketime(proc.popen.pid)

    def _ended(self, proc: _Process) -> None:
        proc.record.ended_ms = now_ms()
        if self._libfaketime is not None:
            forget_faketime(proc.popen.pid)

    # ---- what the logs say -------------------------------------------------------------

    def collect(self) -> tuple[list[Incarnation], list[ProbeWrite]]:
        """Every incarnation (with its error-level events) and every probe write logged."""
        incarnations, writes = [], []
        for procs in self._processes.values():
            for proc in procs:
                for entry in _json_lines(proc.log_path):
                    event = entry.get("event")
                    if event == "probe.write":
                        writes.append(ProbeWrite(
                            node_id=proc.record.node_id, incarnation=proc.record.number,
                            term=int(entry["term"]), accepted=bool(entry["accepted"]),
                            redis_now=int(entry["redis_now"]), current_term=entry.get("current_term"),
                            seq=int(entry.get("seq", 0)), lease=entry.get("lease")))
                    elif entry.get("level") in ("error", "critical"):
                        proc.record.errors.append(str(event))
                if "Traceback (most recent call last)" in proc.log_path.read_text(errors="replace"):
                    proc.record.errors.append("a Python traceback outside the JSON log")
                incarnations.append(proc.record)
        return incarnations, writes


    def collect_tenures(self) -> list[Tenure]:
        """Many leases: every stretch a lease's daemon was leader, from its ``state.changed``
        lines (they name the lease; ``leader.started`` / ``leader.stopped`` do not)."""
        tenures = []
        for procs in self._processes.values():
            for proc in procs:
                tenures += tenures_from_log(proc.record.node_id, proc.record.number,
                                            _json_lines(proc.log_path))
        return tenures

    def collect_children(self) -> tuple[list[ChildRun], list[ProbeWrite]]:
        """Every child's runs (ticks split at silences) and its fenced writes."""
        runs, writes = [], []
        for path in sorted(self.children_dir.glob("child-*.jsonl")):
            lines = _json_lines(path)
            if not lines or lines[0].get("e") != "start":
                continue
            head = lines[0]
            run = ChildRun(node_id=str(head["node"]), pid=int(head["pid"]), term=int(head["term"]),
                           started_ms=int(head["t"]))
            last: int | None = None
            for entry in lines:
                at = int(entry.get("t", 0))
                if last is None or at - last > TICK_GAP_MS:
                    run.segments.append([at, at])
                run.segments[-1][1] = max(run.segments[-1][1], at)
                last = at
                if entry.get("e") == "term":
                    run.stopped_by_term = True
                elif entry.get("e") == "w" and entry.get("now") is not None:
                    writes.append(ProbeWrite(
                        node_id=run.node_id, incarnation=run.pid, term=int(entry["term"]),
                        accepted=bool(entry["ok"]), redis_now=int(entry["now"]),
                        current_term=entry.get("cur"), seq=int(entry.get("seq", 0)),
                        source="child"))
            runs.append(run)
        return runs, writes


def log_ms(entry: dict[str, Any]) -> int | None:
    """A log line's ``timestamp`` (ISO, UTC) in epoch ms, or None."""
    stamp = entry.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round(moment.timestamp() * 1000)


def tenures_from_log(node: str, number: int, entries: list[dict[str, Any]]) -> list[Tenure]:
    """The lease tenures one incarnation's log shows: each ``state.changed`` to ``leader``
    of a lease opens one, the next one from ``leader`` of that lease closes it."""
    open_: dict[str, Tenure] = {}
    out: list[Tenure] = []
    for line, entry in enumerate(entries):
        lease = entry.get("lease")
        at = log_ms(entry)
        if entry.get("event") != "state.changed" or not isinstance(lease, str) or at is None:
            continue
        if entry.get("to") == "leader" and entry.get("from") != "leader" and lease not in open_:
            term = entry.get("term")
            open_[lease] = Tenure(node, number, lease, term if isinstance(term, int) else None, at,
                                  started_line=line)
            out.append(open_[lease])
        elif entry.get("from") == "leader" and entry.get("to") != "leader" and lease in open_:
            tenure = open_.pop(lease)
            tenure.ended_ms, tenure.reason = at, str(entry.get("reason") or "")
            tenure.ended_line = line
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is not alive
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return False
    return True


def _json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                out.append(entry)
    return out
