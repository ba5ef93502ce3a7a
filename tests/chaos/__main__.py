"""``python -m tests.chaos --minutes 10 --seed N --report docs/reliability.md``: the full run.

Splits the minutes over ``--runs`` runs (seeds N, N+1, ...; each a fresh Redis and cluster),
checks each recording, writes the report and exits 1 if any check failed, printing the seed
and the command that replays the failing run. Recordings and daemon logs stay in --workdir.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.chaos.checker import check
from tests.chaos.harness import Options, run
from tests.chaos.recording import KINDS
from tests.chaos.report import render


def _say(seed: int) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(f"[seed {seed}] {line}", flush=True)
    return say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="total time injecting faults")
    parser.add_argument("--seed", type=int, default=None, help="replay this seed (default: random)")
    parser.add_argument("--runs", type=int, default=1, help="split the time over this many runs")
    parser.add_argument("--report", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and recordings here")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1, 1_000_000)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="coordinator-chaos-"))
    command = f"python -m tests.chaos --minutes {args.minutes:g} --seed {seed} --runs {args.runs}"
    if args.kinds != ",".join(KINDS):
        command += f" --kinds {args.kinds}"
    print(f"chaos: {command} (work directory {workdir})", flush=True)

    results = []
    for i in range(args.runs):
        run_seed = seed + i
        options = Options(seed=run_seed, seconds=args.minutes * 60 / args.runs,
                          workdir=workdir / f"seed-{run_seed}", kinds=kinds, say=_say(run_seed))
        recording = run(options)
        verdict = check(recording)
        results.append((recording, verdict))
        for violation in verdict.violations:
            print(f"[seed {run_seed}] VIOLATION {violation}", flush=True)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render(results, command + (
            f" --report {args.report}" if args.report else "")))
        print(f"chaos: report written to {args.report}")
    failed = [r.seed for r, v in results if not v.ok]
    for r, v in results:
        print(f"chaos: seed {r.seed}: {len(r.faults)} faults, {len(v.violations)} violations")
    if failed:
        for s in failed:
            print(f"chaos: FAILED - replay with: python -m tests.chaos --minutes "
                  f"{args.minutes / args.runs:g} --seed {s}"
                  + (f" --kinds {args.kinds}" if args.kinds != ",".join(KINDS) else ""))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
