"""The short chaos run (about 60 s) inside the suite; the full one is ``python -m tests.chaos``.

Every kind of fault once or more, on real processes; zero violations of any check allowed.
``CHAOS_SEED=N`` replays a seed; a failure names the seed that replays it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos.checker import check
from tests.chaos.harness import Options, run
from tests.chaos.report import render
from tests.redis_server import redis_server_binary

pytestmark = pytest.mark.e2e
SECONDS = 50.0  # injecting faults; start-up, settling and collecting add about 10 s


def test_a_minute_of_mixed_faults_breaks_nothing(tmp_path: Path) -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary on this machine (apt-get install redis-server)")
    seed = int(os.environ.get("CHAOS_SEED") or random.randrange(1, 1_000_000))
    print(f"chaos seed {seed} (replay: CHAOS_SEED={seed}, or python -m tests.chaos "
          f"--minutes {SECONDS / 60:.3g} --seed {seed})")
    recording = run(Options(seed=seed, seconds=SECONDS, workdir=tmp_path, say=print))
    verdict = check(recording)
    report = render([(recording, verdict)], f"CHAOS_SEED={seed} pytest tests/test_chaos.py")
    (tmp_path / "reliability.md").write_text(report)
    print(report)
    kinds = {f.kind for f in recording.faults}
    assert len(kinds) >= 6, f"seed {seed}: only {sorted(kinds)} were injected"
    assert recording.writes and any(w.accepted for w in recording.writes)
    assert verdict.ok, f"seed {seed} (replay with CHAOS_SEED={seed}):\n" + "\n".join(
        str(v) for v in verdict.violations)
