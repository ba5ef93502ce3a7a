"""Leader-only commands: ``coordinator run -- CMD`` runs CMD only while this node leads.

The daemon gives the runner its hooks; the runner has the watchdog (a process of its own,
in a session of its own, ``coordinator/child/watchdog.py``) start the child when leadership
begins, keeps it told of the lease deadline, and has it stop the child when leadership,
the mode or the daemon says so. The watchdog guarantees the child never outlives the
lease while the daemon is frozen or dead; the runner's backstop (``watchdog_link.Backstop``)
does while the watchdog alone is frozen.

The runner makes the daemon a child subreaper (as the watchdog is): it assumes a process of
its own (``coordinator run``), so that what the child started and the watchdog adopted comes
to the daemon if the watchdog dies, and is killed with the child.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from coordinator.child.watchdog_link import Backstop, OutputRelay, WatchdogLink, spawn_watchdog
from coordinator.child.watchdog_processes import become_subreaper
from coordinator.child.watchdog_rules import now, startable
from coordinator.clock import bounded
from coordinator.daemon.hooks import Hooks, LeaderContext
from coordinator.errors import CoordinatorError, InvalidArgumentError
from coordinator.guardian.guardian_link import guard
from coordinator.logs import get_logger
from coordinator.settings import ENV_PREFIX, Settings

RestartPolicy = Literal["on-failure", "always", "never"]
Decision = Literal["restart", "done", "finish"]
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
STABLE_RUN = 10.0  # a child that ran this long before exiting starts the backoff afresh
WATCHDOG_EXIT_WAIT = 1.0
WATCHDOG_READY_WAIT = 10.0
BACKSTOP_WAIT = 1.0  # for a child the daemon itself SIGKILLed to be gone
# how long after the grace the watchdog may take to report the child gone before the daemon
# kills it itself (the watchdog SIGKILLs at the grace; this is its report's way back)
REPORT_WAIT = 0.5


@dataclass(frozen=True)
class Command:
    """The child's argv and the executable it resolved to when the daemon started."""

    argv: tuple[str, ...]
    executable: str


def resolve_command(argv: Sequence[str]) -> Command:
    """Find ``argv[0]`` now, so a missing or non-executable CMD fails before any lease."""
    if not argv or not argv[0]:
        raise InvalidArgumentError("no command given after `--`")
    name = argv[0]
    found = shutil.which(name)
    if found is not None:
        return Command(tuple(argv), os.path.abspath(found))
    if os.sep not in name:
        raise InvalidArgumentError(f"cannot run {name!r}: not found on PATH")
    if not os.path.exists(name):
        raise InvalidArgumentError(f"cannot run {name!r}: no such file")
    if os.path.isdir(name):
        raise InvalidArgumentError(f"cannot run {name!r}: is a directory")
    raise InvalidArgumentError(f"cannot run {name!r}: not executable")


def child_env(settings: Settings, term: int) -> dict[str, str]:
    """What the child learns: its fencing token and where it leads (the Redis URL, which
    may hold a password, only when COORDINATOR_CHILD_PASS_REDIS_URL is set)."""
    env = {
        ENV_PREFIX + "TERM": str(term),
        ENV_PREFIX + "NODE_ID": settings.node_id,
        ENV_PREFIX + "LEASE_NAME": settings.lease_name,
        ENV_PREFIX + "NAMESPACE": settings.namespace,
    }
    if settings.many_leases:  # one child per held lease: which one this is
        env[ENV_PREFIX + "LEASE"] = settings.lease_name
    if settings.child_pass_redis_url:
        env[ENV_PREFIX + "REDIS_URL"] = settings.redis_url.get_secret_value()
    return env


def inherited_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The daemon's environment without any COORDINATOR_* setting: the watchdog's and the
    child's base.

    Every setting goes, not only those that hold a secret (the Redis URL, the Sentinel
    password): what the child learns of the coordinator is exactly ``child_env``, and a
    secret setting added later cannot leak by being forgotten here. Names are matched in
    any case, as the settings themselves are read. The rest of the environment (PATH,
    HOME, the program's own configuration) is the user's and passes on."""
    return {k: v for k, v in environ.items() if not k.upper().startswith(ENV_PREFIX)}


def after_exit(policy: RestartPolicy, status: int, *, signalled: bool) -> Decision:
    """What to do when the child exits while still leader: restart it, be done for this
    tenure, or finish the daemon. A child the watchdog had to signal did not choose to
    exit (its lease ran short), so it is started again whatever the policy."""
    if signalled:
        return "restart"
    if policy == "never":
        return "finish"
    if policy == "always" or status != 0:
        return "restart"
    return "done"


def restart_delay(quick_exits: int) -> float:
    """Backoff before a restart: 0.5 s doubling per quick exit in a row, capped at 30 s."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(0, quick_exits - 1))


def exit_code(status: int) -> int:
    """A child's return code as a shell reports it (killed by signal N: 128 + N)."""
    return status if status >= 0 else 128 - status


def describe_status(status: int) -> str:
    """``exit 3`` or ``killed by SIGKILL``."""
    if status >= 0:
        return f"exit {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"


async def _forever() -> None:
    await asyncio.Event().wait()


class ChildRunner:
    """Runs the leader-only child through the watchdog; ``hooks()`` plugs it into a Daemon."""

    def __init__(self, settings: Settings, command: Command,
                 on_finished: Callable[[], None] = lambda: None) -> None:
        self._settings, self._command, self._on_finished = settings, command, on_finished
        self._grace = settings.effective_child_grace
        self._policy: RestartPolicy = settings.child_restart
        self._deadline: float | None = None
        self._last_deadline: float | None = None
        self._term: int | None = None  # the tenure's, once known; tags deadline messages
        self._mode = "running"
        self._changed = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._ready = asyncio.Event()
        self._outstanding = 0
        self._run: asyncio.Future[tuple[int, bool] | None] | None = None
        self._stopping = False
        self._link: WatchdogLink | None = None
        self._relay: OutputRelay | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._backstop = Backstop(self._backstop_killed)
        self._backstopped = False  # the backstop killed the child and saw it exit
        self.exit_status = 0
        self._state: dict[str, Any] = {"running": False, "pid": None, "term": None,
                                       "started_at": None, "restarts": 0,
                                       "last_exit_status": None}
        self.log = get_logger("coordinator.child").bind(node_id=settings.node_id)

    def hooks(self) -> Hooks:
        """The daemon hooks that drive the child."""
        # stop_grace: a stop releases the lease only after _wait_gone has seen the child gone,
        # by the watchdog's hand or, if it is frozen, the daemon's own (backstop)
        return Hooks(on_started_leading=self._lead, on_stopped_leading=self._wait_gone,
                     on_automation_mode_change=self._mode_changed,
                     on_lease_deadline=self._deadline_moved, status_fields=self.status_fields,
                     stop_grace=self._grace + REPORT_WAIT + BACKSTOP_WAIT)

    def status_fields(self) -> dict[str, Any]:
        """``{"child": {running, pid, term, started_at, restarts, ...}}`` for the status."""
        return {"child": {**self._state, "restart_policy": self._policy}}

    async def open(self) -> None:
        """Start the watchdog and wait until it listens, before any lease is taken: its own
        start-up must not delay the child's, and a watchdog that cannot run stops us here."""
        # if the watchdog dies, what it adopted from the child comes here, to be killed
        heir = become_subreaper()
        process, control, outputs = spawn_watchdog(
            self._grace, self._settings.node_id, env=inherited_env(os.environ),
            prefix_output=self._settings.child_output_prefix)
        self._process = process
        # the guardian releases the lease after a crash of the daemon only once the
        # watchdog is gone, which it is only once the child and all it started are
        guard(process.pid)
        self._backstop.adopted_by(process, heir=heir)
        self._link = WatchdogLink(control, on_report=self._report, on_lost=self._watchdog_lost)
        if outputs is not None:
            self._relay = OutputRelay(outputs, f"[{self._settings.node_id}] ".encode())
        try:
            await bounded(self._ready.wait(), WATCHDOG_READY_WAIT)
        except TimeoutError:
            raise CoordinatorError("the child's watchdog did not start") from None
        self.log.info("watchdog.started", pid=process.pid, grace=self._grace)

    def begin_shutdown(self) -> None:
        """The daemon is stopping: SIGTERM the child now and start no other."""
        self._stopping = True
        self._stop_child()

    async def close(self) -> None:
        """Stop the child, wait until it is gone, then let the watchdog exit."""
        self.begin_shutdown()
        await self._wait_gone()
        if self._link is not None:
            self._link.close()
        if self._process is not None:
            deadline = time.monotonic() + WATCHDOG_EXIT_WAIT
            while self._process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if self._process.poll() is None:  # its parent-death signal takes any child along
                self.log.error("watchdog.killed", pid=self._process.pid)
                self._process.kill()
                self._process.wait()
        self._backstop.forget()
        if self._relay is not None:
            self._relay.drain()

    # ---- the hooks ----

    async def _lead(self, ctx: LeaderContext) -> None:
        self._mode = ctx.automation_mode
        self._term = ctx.term
        if self._deadline is not None:
            # The tenure's deadline, now with its term (its first came untagged). This runs
            # only while the daemon leads ctx.term (the step that ends a tenure cancels this
            # task), so the deadline is that term's: for a term led again after it ended
            # (degraded, then renewed), this is what tells the watchdog it is live again,
            # before any start of it.
            self._send({"deadline": self._deadline, "term": ctx.term})
        quick_exits = 0
        try:
            while True:
                await self._until_startable()
                began = now()
                result = await self._run_once(ctx.term)
                if result is None:
                    decision: Decision = "restart"  # the start failed; logged already
                else:
                    status, signalled = result
                    if self._stopping:
                        return
                    if self._mode != "running":
                        # stopped for a pause, or finished while draining: not restarted
                        # whatever the policy; it starts again once the mode is running
                        self.log.info("child.not_restarted", term=ctx.term, mode=self._mode,
                                      exit_status=status)
                        continue
                    decision = after_exit(self._policy, status, signalled=signalled)
                    if decision == "finish":
                        self.exit_status = exit_code(status)
                        self.log.info("child.finished", term=ctx.term, policy=self._policy,
                                      exit_status=status, daemon_exit_status=self.exit_status)
                        self._on_finished()
                    if decision != "restart":
                        await _forever()
                quick_exits = quick_exits + 1 if now() - began < STABLE_RUN else 1
                delay = restart_delay(quick_exits)
                self.log.info("child.restarting", term=ctx.term, delay=delay,
                              restarts=self._state["restarts"] + 1)
                await asyncio.sleep(delay)
                self._state["restarts"] += 1
        finally:
            self._stop_child()

    async def _wait_gone(self) -> None:
        """Until the child is gone: the watchdog ends it within the grace; if it does not
        say so in time (stopped on its own), the daemon kills the child itself, so that no
        child outlives this tenure once the lease is released or lapses."""
        self._stop_child()
        if self._backstopped and self._backstop.exited():
            return
        try:
            await bounded(self._idle.wait(), self._grace + REPORT_WAIT)
        except TimeoutError:
            self.log.error("child.stop_timed_out", grace=self._grace)
            self._backstopped = await self._backstop.kill_and_wait(
                "the watchdog did not report the child gone", BACKSTOP_WAIT)

    async def _mode_changed(self, mode: str) -> None:
        self._mode = mode
        if mode == "paused" and not self._idle.is_set():
            self.log.info("child.stopping", reason="automation mode paused")
            self._stop_child()
        self._changed.set()

    def _deadline_moved(self, deadline: float | None, term: int | None = None) -> None:
        """The lease deadline moved (None: leadership ended). The message names the term
        once it is known (the daemon may say it; else the tenure's first deadline comes
        before ``_lead`` learns it), so the watchdog can refuse starts of an ended tenure."""
        if term is not None:
            self._term = term
        self._deadline = deadline
        self._send({"deadline": deadline, "term": self._term})
        if deadline is None:
            self._term = None
            self._backstop.hold()
        else:
            self._last_deadline = deadline
            self._backstop.renewed(deadline)
        self._changed.set()

    # ---- one run ----

    async def _until_startable(self) -> None:
        while True:
            self._changed.clear()
            if self._stopping:
                await _forever()
            if self._mode == "running" and startable(self._deadline, now(), self._grace):
                return
            await self._changed.wait()

    async def _run_once(self, term: int) -> tuple[int, bool] | None:
        if self._link is None:
            raise RuntimeError("ChildRunner.open() was not called")
        self._run = asyncio.get_running_loop().create_future()
        self._outstanding += 1
        self._idle.clear()
        self._link.send({"start": {
            "term": term, "argv": list(self._command.argv), "executable": self._command.executable,
            "env": child_env(self._settings, term), "deadline": self._deadline,
        }})
        return await self._run

    def _report(self, report: dict[str, Any]) -> None:
        if "ready" in report:
            self._ready.set()
            return
        if "started" in report:
            r = report["started"]
            self._state.update(running=True, pid=r.get("pid"), term=r.get("term"),
                               started_at=r.get("at"))
            self._backstopped = False
            if isinstance(r.get("pid"), int):
                self._backstop.watch(r["pid"], self._deadline if self._deadline is not None
                                     else self._last_deadline)
                if self._deadline is None or self._mode == "paused" or self._stopping:
                    self._backstop.hold()
            self.log.info("child.started", pid=r.get("pid"), term=r.get("term"),
                          argv0=self._command.argv[0])
            return
        if "exited" in report:
            r = report["exited"]
            status = int(r.get("status", -1))
            self._state.update(running=False, last_exit_status=status)
            self._backstop.forget()
            self._backstopped = False
            log = self.log.info if status == 0 or self._stopping else self.log.warning
            log("child.exited", pid=r.get("pid"), term=r.get("term"), exit_status=status,
                status=describe_status(status), signalled_by_watchdog=r.get("signalled"))
            self._settle((status, r.get("signalled") is not None))
        elif "failed" in report:
            self.log.error("child.start_failed", term=report["failed"].get("term"),
                           error=report["failed"].get("error"))
            self._settle(None)
        elif "cancelled" in report:
            self.log.info("child.start_cancelled", term=report["cancelled"].get("term"),
                          reason=report["cancelled"].get("reason"))
            self._settle(None)

    def _settle(self, result: tuple[int, bool] | None) -> None:
        self._outstanding = max(0, self._outstanding - 1)
        if self._outstanding == 0:
            self._idle.set()
        if self._run is not None and not self._run.done():
            self._run.set_result(result)

    def _watchdog_lost(self) -> None:
        # Without the watchdog nothing can keep a child inside the lease: give up leading.
        # (The kernel kills a child it left behind: see watchdog_processes.parent_death_signal.)
        self.log.error("watchdog.lost", pid=self._process.pid if self._process else None)
        self._backstop.kill("the watchdog is gone")
        self._backstop.forget()
        self._state.update(running=False)
        self._outstanding = 0
        self._idle.set()
        if self._run is not None and not self._run.done():
            self._run.set_result(None)
        self._stopping = True
        self.exit_status = self.exit_status or 1
        self._on_finished()

    def _stop_child(self) -> None:
        self._backstop.hold()
        self._send({"stop": True})

    def _backstop_killed(self, pid: int, reason: str) -> None:
        self.log.warning("child.killed_by_daemon", pid=pid, reason=reason)  # the backstop works

    def _send(self, message: dict[str, Any]) -> None:
        if self._link is not None:
            self._link.send(message)
