"""The model-checked protocol (model/*.pml): SPIN verifies the fixed design clean and finds a
counterexample for each old bug.

Each case is one check: ``spin -a``, ``gcc -O2 pan.c``, ``./pan`` (safety: assertions and
end states; the liveness promise is a bounded-response assertion, see model/README.md).
A clean check must also be complete: a search cut short by the memory limit proves nothing.
An old-bug check must fail on the assertion that states the broken promise, not on another.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

MODEL = Path(__file__).resolve().parent.parent / "model"

pytestmark = [
    pytest.mark.e2e,  # runs in the full suite (spin + gcc + a search), not in the quick subset
    pytest.mark.skipif(shutil.which("spin") is None or shutil.which("gcc") is None,
                       reason="spin or gcc is not installed (scripts/test.sh installs Debian's spin and gcc)"),
]


@dataclass(frozen=True)
class Check:
    name: str
    file: str
    defines: tuple[str, ...]
    violated: str | None  # None: must verify clean; else a piece of the assertion that must fail


# the safety configurations: 2 daemons, TTL 4 ticks, renew interval 1, margin 1, drift 1
LEASE = ("-DMAX_LATE=0",)
# the liveness configuration: 3 daemons (leader, handover target, one more), TTL 6, renew 2
LIVE = ("-DN=3", "-DLIVE", "-DHANDOVER", "-DMAX_CRASH=1", "-DMAX_LATE=0", "-DTTL=6", "-DRENEW=2",
        "-DDRIFT=0", "-DT_MAX=12", "-DL_BOUND=255")

CHECKS = [
    # the fixed design: every promise holds
    Check("terms-schedule-fence", "lease.pml",
          (*LEASE, "-DT_MAX=5", "-DPROP_TERMS", "-DPROP_OVERLAP", "-DFENCE", "-DPROP_FENCE"), None),
    Check("failover-with-replica-ack", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DPROP_TERMS", "-DPROP_OVERLAP", "-DFAULT_FAILOVER", "-DACK"), None),
    Check("failover-terms", "lease.pml", (*LEASE, "-DT_MAX=4", "-DPROP_TERMS", "-DFAULT_FAILOVER"), None),
    Check("restart-empty-fence-checks-instance", "lease.pml",
          (*LEASE, "-DT_MAX=4", "-DFENCE", "-DPROP_FENCE", "-DFAULT_RESTART", "-DPERSIST=0",
           "-DOLD_TERM_RULE"), None),
    Check("handover-liveness", "lease.pml", LIVE, None),
    Check("watchdog", "watchdog.pml", ("-DPROP_START", "-DPROP_RUN"), None),
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
]


def run_check(check: Check, work: Path) -> str:
    for source in MODEL.glob("*.pml"):
        shutil.copy(source, work / source.name)
    subprocess.run(["spin", *check.defines, "-a", check.file], cwd=work, check=True,
                   capture_output=True, timeout=60)
    subprocess.run(["gcc", "-O2", "-DSAFETY", "-DMEMLIM=2048", "-w", "-o", "pan", "pan.c"],
                   cwd=work, check=True, capture_output=True, timeout=120)
    result = subprocess.run(["./pan", "-m100000"], cwd=work, capture_output=True, text=True,
                            timeout=300)
    return result.stdout + result.stderr


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_model_check(check: Check, tmp_path: Path) -> None:
    out = run_check(check, tmp_path)
    found = re.search(r"errors: (\d+)", out)
    assert found is not None, out
    errors = int(found.group(1))
    if check.violated is None:
        assert errors == 0, out
        assert "reached -DMEMLIM bound" not in out, "the search was cut short:\n" + out
        assert "depth too small" not in out, out
    else:
        assert errors >= 1, f"{check.name}: no counterexample found\n{out}"
        assert "assertion violated" in out and check.violated in out, out
