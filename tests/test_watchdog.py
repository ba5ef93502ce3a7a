"""The watchdog: its pure "which signal when" decision, then the process alone on its socket."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.child.watchdog_link import encode, spawn_watchdog
from coordinator.child.watchdog_processes import descendants
from coordinator.child.watchdog_rules import (
    Tenure,
    Watch,
    belongs,
    due,
    heard_deadline,
    next_wake,
    now,
    refusal,
    startable,
    with_deadline,
    with_stop,
)

GRACE = 0.5


# ---- the pure decision ----------------------------------------------------------------------


def test_nothing_before_deadline_minus_grace_then_sigterm_then_sigkill_at_the_deadline() -> None:
    w = Watch(deadline=10.0)
    assert due(w, 9.49, GRACE) == (w, None)
    assert next_wake(w, GRACE) == 9.5
    w, sig = due(w, 9.5, GRACE)
    assert sig is signal.SIGTERM and w.term_sent_at == 9.5
    assert due(w, 9.99, GRACE)[1] is None and next_wake(w, GRACE) == 10.0
    w, sig = due(w, 10.0, GRACE)
    assert sig is signal.SIGKILL and next_wake(w, GRACE) is None
    assert due(w, 99.0, GRACE)[1] is None  # once is enough


def test_a_renewal_postpones_the_end_but_not_once_sigterm_was_sent() -> None:
    w = with_deadline(Watch(deadline=10.0), 12.0)
    assert due(w, 9.6, GRACE)[1] is None and next_wake(w, GRACE) == 11.5
    w, _ = due(w, 11.5, GRACE)
    assert with_deadline(w, 20.0) == w  # the child on its way out gets no more time
    assert due(with_deadline(w, 20.0), 12.0, GRACE)[1] is signal.SIGKILL


def test_a_stop_sigterms_at_once_and_sigkills_after_the_grace() -> None:
    w = with_stop(Watch(deadline=100.0))
    assert next_wake(w, GRACE) == -math.inf
    w, sig = due(w, 5.0, GRACE)
    assert sig is signal.SIGTERM and next_wake(w, GRACE) == 5.5
    assert due(w, 5.49, GRACE)[1] is None
    assert due(w, 5.5, GRACE)[1] is signal.SIGKILL


def test_the_sigkill_after_a_stop_never_comes_past_the_deadline() -> None:
    w, sig = due(with_stop(Watch(deadline=5.2)), 5.0, GRACE)
    assert sig is signal.SIGTERM and next_wake(w, GRACE) == 5.2
    assert due(w, 5.2, GRACE)[1] is signal.SIGKILL


def test_losing_the_deadline_is_a_stop_and_keeps_the_last_deadline_as_the_bound() -> None:
    w = with_deadline(Watch(deadline=5.2), None)
    assert w.stop_requested and w.deadline == 5.2
    w, sig = due(w, 5.0, GRACE)
    assert sig is signal.SIGTERM and next_wake(w, GRACE) == 5.2


def test_a_watchdog_that_woke_late_sends_both_signals_at_once() -> None:
    w, first = due(Watch(deadline=10.0), 11.0, GRACE)
    _, second = due(w, 11.0, GRACE)
    assert (first, second) == (signal.SIGTERM, signal.SIGKILL)


def test_a_child_starts_only_with_more_than_the_grace_left() -> None:
    assert startable(10.0, 9.0, GRACE)
    assert not startable(10.0, 9.5, GRACE)
    assert not startable(None, 0.0, GRACE)


def test_a_withdrawn_deadline_ends_its_tenure_said_or_not() -> None:
    t = heard_deadline(Tenure(), 10.0, None)
    assert t == Tenure(10.0, None, None)
    t = heard_deadline(t, 11.0, 8)
    assert t == Tenure(11.0, 8, None)
    assert heard_deadline(t, None, None) == Tenure(None, None, 8)  # the term heard last
    assert heard_deadline(t, None, 9) == Tenure(None, None, 9)
    assert heard_deadline(Tenure(None, None, 9), None, 5) == Tenure(None, None, 9)  # max
    assert heard_deadline(Tenure(None, None, 9), None, 9) == Tenure(None, None, 9)


def test_a_fresh_deadline_for_the_term_that_ended_leads_it_again() -> None:
    # the socket is FIFO: it was sent after the end, when the daemon led term 9 again
    # (degraded, then renewed)
    assert heard_deadline(Tenure(None, None, 9), 12.0, 9) == Tenure(12.0, 9, None)
    assert refusal(heard_deadline(Tenure(None, None, 9), 12.0, 9), 9) is None
    # an untagged one may be a new tenure's first: it revives nothing
    assert heard_deadline(Tenure(None, None, 9), 12.0, None) == Tenure(12.0, None, 9)
    # one for an older term than any heard of since is a leftover: it changes nothing
    assert heard_deadline(Tenure(None, None, 9), 12.0, 8) == Tenure(None, None, 9)
    assert heard_deadline(Tenure(11.0, 10, None), 12.0, 9) == Tenure(11.0, 10, None)
    assert heard_deadline(Tenure(11.0, 10, None), None, 9) == Tenure(11.0, 10, None)


def test_descendants_are_found_through_parent_links_parents_first() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20, 14: 13}
    assert descendants(parents, 10) == [11, 13, 12, 14]
    assert descendants(parents, 12) == []
    assert descendants({5: 6, 6: 5}, 5) == [6]  # a loop (cannot happen) ends


def test_starts_of_ended_or_older_tenures_are_refused() -> None:
    assert refusal(Tenure(ended=8), 8) == "the tenure of term 8 ended"
    assert refusal(Tenure(ended=8), 7) is not None
    assert refusal(Tenure(ended=8), 9) is None
    assert refusal(Tenure(10.0, 9, None), 8) is not None
    assert refusal(Tenure(10.0, 9, None), 9) is None
    assert refusal(Tenure(10.0, None, None), 1) is None  # nothing known against it
    assert belongs(None, 8) and belongs(8, None) and belongs(8, 8) and not belongs(9, 8)


# ---- the process alone ----------------------------------------------------------------------

STUBBORN = """
import signal, sys, time
clock = getattr(time, "CLOCK_BOOTTIME", None)
clock = (lambda: time.clock_gettime(time.CLOCK_BOOTTIME)) if clock is not None else time.monotonic
log = sys.argv[1]
def note(what):
    with open(log, "a") as f:
        f.write(f"{what} {clock()}\\n")
signal.signal(signal.SIGTERM, lambda *_: note("TERM"))
note("START")
while True:
    time.sleep(0.005)
"""

POLITE_WITH_HELPER = """
import subprocess, sys, time
helper = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1], "w") as f:
    f.write(str(helper.pid))
while True:
    time.sleep(0.01)
"""


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def wait_until(condition: Any, timeout: float) -> bool:
    end = now() + timeout
    while now() < end:
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


class Harness:
    """A watchdog on its socket, as the daemon would see it."""

    def __init__(self, grace: float) -> None:
        self.process, self.sock, _ = spawn_watchdog(grace, "t", env=dict(os.environ))
        self.sock.setblocking(True)
        self.buffer = b""
        self.child_pids: list[int] = []
        assert "ready" in self.report()[1]

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode(message))

    def start(self, argv: list[str], deadline: float, term: int = 7) -> None:
        self.send({"start": {"term": term, "argv": argv, "executable": argv[0], "env": {},
                             "deadline": deadline}})

    def quiet_for(self, seconds: float) -> bool:
        """True if no report comes within ``seconds``."""
        if b"\n" in self.buffer:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return True
        self.buffer += data
        return False

    def report(self, timeout: float = 5.0) -> tuple[float, dict[str, Any]]:
        """The next report, and the monotonic time it was read."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("the watchdog closed its socket")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        message = json.loads(line)
        if "started" in message:
            self.child_pids.append(message["started"]["pid"])
        return now(), message

    def cleanup(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in self.child_pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def harness() -> Iterator[Any]:
    made: list[Harness] = []

    def make(grace: float = GRACE) -> Harness:
        made.append(Harness(grace))
        return made[-1]

    try:
        yield make
    finally:
        for h in made:
            h.cleanup()


def script(tmp_path: Path, source: str) -> str:
    path = tmp_path / "child.py"
    path.write_text(source)
    return str(path)


def notes(log: Path) -> dict[str, float]:
    return {k: float(v) for k, v in (line.split() for line in log.read_text().splitlines())}


def test_a_child_that_ignores_sigterm_is_killed_at_the_deadline(harness: Any,
                                                                tmp_path: Path) -> None:
    wd = harness(0.3)
    log = tmp_path / "notes"
    deadline = now() + 1.0
    wd.start([sys.executable, script(tmp_path, STUBBORN), str(log)], deadline)
    _, started = wd.report()
    assert started["started"]["term"] == 7
    at, exited = wd.report()
    assert exited["exited"]["status"] == -signal.SIGKILL
    assert exited["exited"]["signalled"] == "SIGKILL"
    assert deadline - 0.3 <= notes(log)["TERM"] < deadline - 0.3 + 0.1
    assert deadline <= at < deadline + 0.1


def test_renewals_keep_the_child_and_a_stop_ends_it_after_the_grace(harness: Any,
                                                                    tmp_path: Path) -> None:
    wd = harness(0.3)
    log = tmp_path / "notes"
    wd.start([sys.executable, script(tmp_path, STUBBORN), str(log)], now() + 0.8)
    wd.report()
    first_deadline = now() + 0.8
    end = now() + 1.5
    while now() < end:  # renewals every 0.2 s, well past the first deadline
        wd.send({"deadline": now() + 0.8})
        time.sleep(0.2)
    assert now() > first_deadline and "TERM" not in notes(log)
    stop_at = now()
    wd.send({"stop": True})
    at, exited = wd.report()
    assert notes(log)["TERM"] - stop_at < 0.1
    assert exited["exited"]["status"] == -signal.SIGKILL
    assert stop_at + 0.3 <= at < stop_at + 0.3 + 0.1


def test_when_the_daemon_side_closes_the_child_and_its_helpers_die_and_it_exits(
    harness: Any, tmp_path: Path
) -> None:
    wd = harness()
    helper_file = tmp_path / "helper"
    wd.start([sys.executable, script(tmp_path, POLITE_WITH_HELPER), str(helper_file)],
             now() + 30)
    _, started = wd.report()
    assert wait_until(lambda: helper_file.exists() and helper_file.read_text(), 5)
    helper = int(helper_file.read_text())
    closed_at = now()
    wd.sock.close()  # what the watchdog sees when the daemon dies, even by kill -9
    wd.process.wait(timeout=5)
    assert now() - closed_at < 0.3  # SIGTERM at once; the child obeys it
    assert gone(started["started"]["pid"])
    assert wait_until(lambda: gone(helper), 1)  # swept with the child's process group


def test_a_start_with_too_little_lease_left_is_refused(harness: Any) -> None:
    wd = harness(0.5)
    wd.start(["/bin/sleep", "30"], now() + 0.2)
    _, report = wd.report()
    assert report == {"failed": {"term": 7, "error": "too little of the lease left to start"}}


def test_a_start_that_cannot_exec_is_reported(harness: Any, tmp_path: Path) -> None:
    wd = harness()
    wd.start([str(tmp_path / "missing")], now() + 30)
    _, report = wd.report()
    assert report["failed"]["term"] == 7 and "missing" in report["failed"]["error"]


def test_the_child_dies_with_a_killed_watchdog(harness: Any) -> None:
    wd = harness()
    wd.start(["/bin/sleep", "300"], now() + 30)
    _, started = wd.report()
    wd.process.kill()  # e.g. the daemon's whole process group killed at once
    wd.process.wait()
    assert wait_until(lambda: gone(started["started"]["pid"]), 1)



# ---- a tenure that ended starts nothing, whatever the order of the messages --------------


def start_stubborn(wd: Harness, tmp_path: Path) -> Path:
    """A child of term 7 that ignores SIGTERM, once its handler is in place."""
    log = tmp_path / "stubborn"
    wd.start([sys.executable, script(tmp_path, STUBBORN), str(log)], now() + 30)
    assert "started" in wd.report()[1]
    assert wait_until(lambda: log.exists() and "START" in log.read_text(), 5)
    return log


def test_leadership_ending_cancels_a_start_queued_behind_a_dying_child(harness: Any,
                                                                       tmp_path: Path) -> None:
    wd = harness(0.5)
    start_stubborn(wd, tmp_path)
    wd.send({"stop": True})  # SIGTERM, which it ignores: it dies at the SIGKILL, 0.5 s on
    wd.start(["/bin/sleep", "300"], now() + 30, term=8)  # queued behind it
    wd.send({"deadline": None})  # ... and then the tenure ends
    reports = [wd.report()[1], wd.report()[1]]
    assert {"cancelled"} == {k for r in reports for k in r} - {"exited"}
    assert [r["cancelled"]["term"] for r in reports if "cancelled" in r] == [8]
    assert wd.quiet_for(1.0), "a child was started for a tenure that had ended"


def test_a_queued_start_runs_to_the_latest_deadline_not_to_its_own(harness: Any,
                                                                   tmp_path: Path) -> None:
    wd = harness(0.3)
    start_stubborn(wd, tmp_path)
    began = now()
    wd.send({"stop": True})
    wd.start(["/bin/sleep", "300"], began + 30, term=8)
    wd.send({"deadline": began + 1.2, "term": 8})  # the lease was not renewed as hoped
    _, first = wd.report()
    assert first["exited"]["term"] == 7
    _, second = wd.report()
    assert second["started"]["term"] == 8
    at, third = wd.report(timeout=3.0)
    assert third["exited"]["term"] == 8 and third["exited"]["signalled"] == "SIGTERM"
    assert at < began + 1.2 + 0.2


def test_a_start_for_a_term_whose_deadline_was_withdrawn_is_cancelled(harness: Any) -> None:
    wd = harness()
    wd.send({"deadline": now() + 30, "term": 8})
    wd.send({"deadline": None, "term": 8})
    wd.start(["/bin/sleep", "300"], now() + 30, term=8)  # late: e.g. the daemon stalled
    _, report = wd.report()
    assert report["cancelled"]["term"] == 8 and "ended" in report["cancelled"]["reason"]
    wd.start(["/bin/sleep", "300"], now() + 30, term=9)  # a new tenure does start
    _, report = wd.report()
    assert report["started"]["term"] == 9


def test_a_start_older_than_the_latest_deadlines_term_is_cancelled(harness: Any) -> None:
    wd = harness()
    wd.send({"deadline": now() + 30, "term": 9})
    wd.start(["/bin/sleep", "300"], now() + 30, term=8)
    _, report = wd.report()
    assert report["cancelled"]["term"] == 8


def test_a_deadline_of_a_newer_term_stops_the_old_terms_child_at_once(harness: Any,
                                                                      tmp_path: Path) -> None:
    wd = harness(0.3)
    log = start_stubborn(wd, tmp_path)
    sent = now()
    wd.send({"deadline": now() + 30, "term": 9})  # term 7 is over, whatever its deadline
    at, report = wd.report()
    assert report["exited"]["term"] == 7 and report["exited"]["signalled"] == "SIGKILL"
    assert notes(log)["TERM"] - sent < 0.2 and at - sent < 0.3 + 0.2


def test_a_deadline_of_a_newer_term_cancels_a_queued_start(harness: Any,
                                                          tmp_path: Path) -> None:
    wd = harness(0.3)
    start_stubborn(wd, tmp_path)
    wd.send({"stop": True})
    wd.start(["/bin/sleep", "300"], now() + 30, term=8)  # queued behind the dying child
    wd.send({"deadline": now() + 30, "term": 9})
    reports = [wd.report()[1], wd.report()[1]]
    assert [r["cancelled"]["term"] for r in reports if "cancelled" in r] == [8]
    assert [r["exited"]["term"] for r in reports if "exited" in r] == [7]
    assert wd.quiet_for(0.5)


def test_renewals_of_the_childs_own_term_keep_it(harness: Any) -> None:
    wd = harness(0.3)
    wd.start(["/bin/sleep", "300"], now() + 0.8, term=8)
    wd.report()
    end = now() + 1.5
    while now() < end:
        wd.send({"deadline": now() + 0.8, "term": 8})
        wd.send({"deadline": now() + 0.8})  # untagged: the current tenure's
        time.sleep(0.2)
    assert wd.quiet_for(0.1)


# ---- the clock ------------------------------------------------------------------------------


def test_deadlines_are_read_on_the_boot_time_clock_the_daemon_uses() -> None:
    from coordinator.clock import Clock

    expected = getattr(time, "CLOCK_BOOTTIME", None)
    if expected is not None:
        assert abs(now() - time.clock_gettime(expected)) < 0.05
    else:
        assert abs(now() - time.monotonic()) < 0.05
    # the daemon's deadlines cross the socket: both ends must read the same clock
    assert abs(now() - Clock().monotonic()) < 0.05


def test_a_late_renewal_of_an_ended_tenure_changes_nothing(harness: Any) -> None:
    wd = harness()
    wd.send({"deadline": now() + 30, "term": 8})
    wd.send({"deadline": None, "term": 8})
    wd.start(["/bin/sleep", "300"], now() + 30, term=9)
    assert "started" in wd.report()[1]
    wd.send({"deadline": now() + 30, "term": 8})  # stale: term 8 ended before term 9 began
    assert wd.quiet_for(0.5), "a stale message stopped the new tenure's child"


# ---- a watchdog that was frozen reads its backlog whole before it acts ------------------------


@contextlib.contextmanager
def frozen(wd: Harness) -> Iterator[None]:
    """The watchdog stopped by its pid (SIGSTOP cannot be ignored) while the daemon talks on:
    what is sent meanwhile waits in the socket, and is read in one go on SIGCONT."""
    os.kill(wd.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(wd.process.pid, signal.SIGCONT)


def test_a_backlog_in_which_the_tenure_ends_after_its_start_starts_nothing(harness: Any) -> None:
    wd = harness()
    with frozen(wd):  # the node leads (a start is queued), then hands over
        wd.send({"deadline": now() + 30, "term": None})  # a tenure's first: term not yet known
        wd.start(["/bin/sleep", "300"], now() + 30, term=8)
        wd.send({"deadline": now() + 30, "term": 8})
        wd.send({"deadline": None, "term": 8})
        wd.send({"stop": True})
    _, report = wd.report()
    assert report["cancelled"]["term"] == 8, report
    assert wd.quiet_for(0.5), "a child was started for a tenure that had ended"


def test_a_backlog_in_which_a_stop_follows_the_start_starts_nothing(harness: Any) -> None:
    wd = harness()
    with frozen(wd):  # the node leads, then `coordinator pause` stops its child
        wd.send({"deadline": now() + 30, "term": 8})
        wd.start(["/bin/sleep", "300"], now() + 30, term=8)
        wd.send({"stop": True})
        wd.send({"deadline": now() + 30, "term": 8})  # it still leads, paused
    _, report = wd.report()
    assert report["cancelled"]["term"] == 8, report
    assert wd.quiet_for(0.5), "a child was started after the stop that followed its start"


def test_a_backlog_that_stops_and_starts_again_runs_the_last_start_only(harness: Any) -> None:
    wd = harness()
    with frozen(wd):  # paused, then running again
        wd.send({"deadline": now() + 30, "term": 8})
        wd.start(["/bin/sleep", "300"], now() + 30, term=8)
        wd.send({"stop": True})
        wd.start(["/bin/sleep", "300"], now() + 30, term=8)
    reports = [wd.report()[1], wd.report()[1]]
    assert [next(iter(r)) for r in reports] == ["cancelled", "started"], reports
    assert wd.quiet_for(0.3)


# ---- the same term led again: Redis stalled, the leader degraded and renewed -----------------


def test_a_fresh_deadline_of_an_ended_term_leads_it_again(harness: Any) -> None:
    wd = harness()
    wd.send({"deadline": now() + 30, "term": 8})
    wd.start(["/bin/sleep", "300"], now() + 30, term=8)
    assert "started" in wd.report()[1]
    wd.send({"deadline": None, "term": 8})  # two renewals failed: degraded
    wd.send({"stop": True})
    assert "exited" in wd.report()[1]
    # a renewal succeeded after all: leader again under the same term. The socket is FIFO,
    # so this deadline was sent after the end above: the daemon trusts term 8 again.
    wd.send({"deadline": now() + 30, "term": None})
    wd.send({"deadline": now() + 30, "term": 8})
    wd.start(["/bin/sleep", "300"], now() + 30, term=8)
    _, report = wd.report()
    assert report.get("started", {}).get("term") == 8, report


# ---- nothing the child started outlives it, in whatever session ------------------------------

DAEMONIZING = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()  # out of the child's process group, as a daemon does
    if os.fork() == 0:  # and orphaned: its parent exits
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(float(sys.argv[2]))
        os._exit(0)
    os._exit(0)
os.wait()
if sys.argv[3] == "exit":
    sys.exit(0)
while True:
    time.sleep(0.01)
"""


def _grandchild(wd: Harness, tmp_path: Path, *, lives: float, child: str) -> int:
    pidfile = tmp_path / "grandchild"
    wd.start([sys.executable, script(tmp_path, DAEMONIZING), str(pidfile), str(lives), child],
             now() + 30)
    assert "started" in wd.report()[1]
    assert wait_until(pidfile.exists, 5)
    pid = int(pidfile.read_text())
    wd.child_pids.append(pid)  # swept by the cleanup whatever happens
    return pid


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_a_grandchild_in_a_session_of_its_own_is_killed_with_the_child(harness: Any,
                                                                       tmp_path: Path) -> None:
    wd = harness(0.3)
    grandchild = _grandchild(wd, tmp_path, lives=300, child="stay")
    assert _parent(grandchild) == wd.process.pid  # the watchdog adopts the orphans
    wd.send({"stop": True})  # SIGTERM, ignored by both; SIGKILL 0.3 s on
    _, report = wd.report()
    assert report["exited"]["signalled"] == "SIGKILL"
    assert wait_until(lambda: gone(grandchild), 1.0), "the grandchild outlived the child"


def test_a_grandchild_left_by_a_child_that_exits_by_itself_is_swept(harness: Any,
                                                                    tmp_path: Path) -> None:
    wd = harness()
    grandchild = _grandchild(wd, tmp_path, lives=300, child="exit")
    _, report = wd.report()
    assert report["exited"]["status"] == 0 and report["exited"]["signalled"] is None
    assert wait_until(lambda: gone(grandchild), 1.0), "the grandchild outlived the child"


def test_adopted_orphans_that_exit_are_reaped(harness: Any, tmp_path: Path) -> None:
    wd = harness()
    grandchild = _grandchild(wd, tmp_path, lives=0.1, child="stay")
    # gone means a zombie at most; reaped means not even that
    assert wait_until(lambda: not os.path.exists(f"/proc/{grandchild}"), 2.0), \
        "an adopted orphan was left a zombie"
