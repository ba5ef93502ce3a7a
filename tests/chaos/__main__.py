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
from tests.chaos.recording import ALL_KINDS
from tests.chaos.report import render
from tests.chaos.setups import SETUPS


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
    parser.add_argument("--setups", default=",".join(SETUPS),
                        help=f"comma-separated setups, each run --runs times ({', '.join(SETUPS)})")
    parser.add_argument("--kinds", default="",
                        help="comma-separated fault kinds (default: each setup's own)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1, 1_000_000)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(ALL_KINDS)
    if unknown:
        parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    setups = [s for s in args.setups.split(",") if s]
    if not setups or set(setups) - set(SETUPS):
        parser.error(f"setups must be among {', '.join(SETUPS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="coordinator-chaos-"))
    options_given = f" --runs {args.runs}"
    if args.setups != ",".join(SETUPS):
        options_given += f" --setups {args.setups}"
    if args.kinds:
        options_given += f" --kinds {args.kinds}"
    command = f"python -m tests.chaos --minutes {args.minutes:g} --seed {seed}{options_given}"
    print(f"chaos: {command} (work directory {workdir})", flush=True)

    results = []
    each = args.minutes * 60 / (args.runs * len(setups))
    run_seed = seed
    for name in setups:
        setup = SETUPS[name]
        for _ in range(args.runs):
            options = Options(seed=run_seed, seconds=each, workdir=workdir / f"{name}-{run_seed}",
                              kinds=kinds or setup.kinds, setup=setup.topology,
                              min_replicas_ack=setup.min_replicas_ack, leases=setup.leases,
                              say=_say(run_seed))
            recording = run(options)
            verdict = check(recording)
            results.append((recording, verdict))
            for violation in verdict.violations:
                print(f"[seed {run_seed}] VIOLATION {violation}", flush=True)
            run_seed += 1
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render(results, command + (
            f" --report {args.report}" if args.report else "")))
        print(f"chaos: report written to {args.report}")
    failed = [r for r, v in results if not v.ok]
    for r, v in results:
        print(f"chaos: seed {r.seed}: {len(r.faults)} faults, {len(v.violations)} violations")
    if failed:
        for r in failed:
            name = next((n for n, s in SETUPS.items() if s.topology == r.settings.setup
                         and s.min_replicas_ack == r.settings.min_replicas_ack
                         and bool(s.leases) == bool(r.settings.leases)
                         and set(s.kinds) >= set(r.settings.kinds)), setups[0])
            print(f"chaos: FAILED - replay with: python -m tests.chaos --minutes "
                  f"{each / 60:g} --seed {r.seed} --runs 1 --setups {name}"
                  + (f" --kinds {args.kinds}" if args.kinds else ""))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
