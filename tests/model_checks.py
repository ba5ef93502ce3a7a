"""The SPIN model checks of model/*.pml, and a runner of them two at a time.

Each check is ``spin -a``, ``gcc pan.c``, ``./pan`` (safety: assertions and end states; the
liveness promise is a bounded-response assertion, see docs/protocol.md). gcc -O2 took more
than half of the checks' time: most searches run a second or less, and -O0 compiles pan.c in
about 1 s instead of 3 to 10 s. The optimisation level changes only how fast a search runs,
not what it explores: the state counts and verdicts are the same at -O0, -O1 and -O2.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MODEL = Path(__file__).resolve().parent.parent / "model"


@dataclass(frozen=True)
class Check:
    name: str
    file: str
    defines: tuple[str, ...]
    violated: str | None  # None: must verify clean; else a piece of the assertion that must fail
    # a search of a million states or more: worth gcc -O1's longer compile (pan runs about twice
    # as fast as at -O0); the others are compiled at -O0 (about 1 s instead of 3 to 10 s)
    big_search: bool = False


# the safety configurations: 2 daemons, TTL 4 ticks, renew interval 1, margin 1, drift 1
LEASE = ("-DMAX_LATE=0",)
# the liveness configuration: 3 daemons (leader, handover target, one more), TTL 6, renew 2
LIVE = ("-DN=3", "-DLIVE", "-DHANDOVER", "-DMAX_CRASH=1", "-DMAX_LATE=0", "-DTTL=6", "-DRENEW=2",
        "-DDRIFT=0", "-DT_MAX=12", "-DL_BOUND=6")

CHECKS = [
    # the fixed design: every promise holds
    Check("terms-schedule-fence", "lease.pml",
          (*LEASE, "-DT_MAX=5", "-DPROP_TERMS", "-DPROP_OVERLAP", "-DFENCE", "-DPROP_FENCE"), None, big_search=True),
    Check("failover-with-replica-ack", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DPROP_TERMS", "-DPROP_OVERLAP", "-DFAULT_FAILOVER", "-DACK"), None, big_search=True),
    Check("failover-terms", "lease.pml", (*LEASE, "-DT_MAX=4", "-DPROP_TERMS", "-DFAULT_FAILOVER"), None,
          big_search=True),
    Check("restart-empty-fence-checks-instance", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DFENCE", "-DPROP_FENCE", "-DFAULT_RESTART", "-DPERSIST=0",
           "-DOLD_TERM_RULE"), None, big_search=True),
    Check("handover-liveness", "lease.pml", LIVE, None),
    Check("watchdog", "watchdog.pml", ("-DPROP_START", "-DPROP_RUN"), None),
    # replies taken up to a tick late (operation timeout 2 > margin): the deadline counts
    # from the send, so still one scheduler at a time
    Check("slow-replies-deadline-from-the-send", "lease.pml",
          (*LEASE, "-DT_MAX=5", "-DOP_TIMEOUT=2", "-DPROP_OVERLAP"), None),
    # a restart restores an older process's lease: renew.lua's instance check refuses it
    Check("restored-lease-of-a-previous-process-not-renewed", "lease.pml",
          (*LEASE, "-DT_MAX=3", "-DDRIFT=0", "-DFAULT_LAST=2", "-DFAULT_RESTART", "-DPERSIST=1",
           "-DHANDOVER", "-DMAX_CRASH=1", "-DPROP_TENURE"), None, big_search=True),
    # the Redis clock ahead then back (stored terms ahead of TIME), then a failover that
    # loses the grants after the step back: the epoch keeps every term new
    Check("epoch-clock-step-back-then-failover-terms", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DDRIFT=0", "-DPROP_TERMS", "-DFAULT_FAILOVER",
           "-DFAULT_STEP_BACK", "-DHANDOVER"), None, big_search=True),
    # today's defects: each must produce a counterexample
    Check("old-term-rule-failover-duplicates-a-term", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DPROP_TERMS", "-DFAULT_FAILOVER", "-DOLD_TERM_RULE"), "!(used[tmp])"),
    Check("old-fence-by-term-accepts-a-stale-write", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DFENCE", "-DPROP_FENCE", "-DFAULT_RESTART", "-DPERSIST=0",
           "-DOLD_TERM_RULE", "-DOLD_FENCE"), "lt_term"),
    Check("old-reservation-for-a-dead-node-holds-up-the-election", "lease.pml",
          (*LIVE, "-DOLD_RESERVE"), "dead_res"),
    Check("old-watchdog-restores-a-queued-start-deadline", "watchdog.pml",
          ("-DPROP_START", "-DPROP_RUN", "-DOLD_RESTORE"), "told_end"),
    # a limit of the new design (docs/protocol.md, "Findings"): with one term unit per tick,
    # terms that ran ahead of the clock repeat after a failover to a replica that has no
    # record of them (no stored term, so no replication id: the epoch cannot apply)
    Check("finding-terms-ahead-of-the-clock-repeat-after-a-fast-failover", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DPROP_TERMS", "-DFAULT_FAILOVER", "-DHANDOVER", "-DSCALE=1"),
          "!(used[tmp])"),
    # a limit the epoch cannot lift (docs/protocol.md, "Findings" 5): grants made while the
    # Redis clock ran ahead that never reached the replica repeat once TIME gets back there
    Check("finding-grants-under-a-clock-ahead-lost-in-a-failover-repeat", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DDRIFT=0", "-DPROP_TERMS", "-DFAULT_FAILOVER",
           "-DFAULT_STEP_BACK", "-DHANDOVER", "-DSTEP_ANY_ORDER"), "!(used[tmp])"),
    # issue 13's mutations: each must produce a counterexample
    # renew.lua without the instance check: a restart restores (from the fsynced copy) the
    # lease of the node's previous process; the new process renews it as its own
    Check("mutation-renew-without-instance-check", "lease.pml",
          (*LEASE, "-DT_MAX=3", "-DDRIFT=0", "-DFAULT_LAST=2", "-DFAULT_RESTART", "-DPERSIST=1",
           "-DHANDOVER", "-DMAX_CRASH=1", "-DPROP_TENURE", "-DMUT_RENEW_ANY_INSTANCE"),
          "rp_ginst[n]", big_search=True),
    # the deadline counted from the reply's arrival: a reply taken a tick late (operation
    # timeout 2 ticks > margin) and a fast local clock: two schedulers
    Check("mutation-deadline-from-the-reply", "lease.pml",
          (*LEASE, "-DT_MAX=5", "-DOP_TIMEOUT=2", "-DPROP_OVERLAP", "-DMUT_DEADLINE_FROM_REPLY"),
          "<=1)||"),
    # the term floor raised by a forged event (anyone may publish on the channel): acquire.lua
    # refuses the term (2^53), nobody leads again
    Check("mutation-term-floor-from-events", "lease.pml", (*LIVE, "-DMUT_EVENT_FLOOR"),
          "leaderless<="),
    # the Redis clock ahead, then back: stored terms run ahead of TIME; a failover loses the
    # grants after the step back; without the epoch the next grant repeats one
    Check("mutation-no-epoch-clock-step-back-failover-repeats-a-term", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DPROP_TERMS", "-DFAULT_FAILOVER", "-DFAULT_STEP_BACK",
           "-DDRIFT=0", "-DHANDOVER", "-DMUT_NO_EPOCH"), "!(used[tmp])"),
]


def run_check(check: Check, work: Path) -> str:
    """One check in the directory ``work`` (made here): what pan printed."""
    work.mkdir()
    for source in MODEL.glob("*.pml"):
        shutil.copy(source, work / source.name)
    subprocess.run(["spin", *check.defines, "-a", check.file], cwd=work, check=True,
                   capture_output=True, timeout=60)
    # safety checks only: no fairness code, no array bound checks (the model keeps its indices)
    level = "-O1" if check.big_search else "-O0"
    subprocess.run(["gcc", level, "-DSAFETY", "-DNOFAIR", "-DNOBOUNDCHECK",
                    "-DMEMLIM=2048", "-w", "-o", "pan", "pan.c"], cwd=work, check=True,
                   capture_output=True, timeout=120)
    result = subprocess.run(["./pan", "-m100000"], cwd=work,
                            capture_output=True, text=True, timeout=300)
    return result.stdout + result.stderr


class ModelChecks:
    """Every check under way, two at a time (the machine has two cores), the big searches first."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="coordinator-model-"))
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="spin")
        ordered = sorted(CHECKS, key=lambda c: not c.big_search)
        self._futures: dict[str, Future[str]] = {
            c.name: self._pool.submit(run_check, c, self.workdir / c.name) for c in ordered}

    def outputs(self) -> dict[str, str]:
        """Every check's output, waiting for the ones still running."""
        return {c.name: self._futures[c.name].result() for c in CHECKS}

    def close(self) -> None:
        """Drop the checks not started yet, wait for the running ones, remove their files."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

