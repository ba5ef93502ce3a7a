"""The chaos harness: real processes, faults from a seed, a pure checker, a report.

Issue 6 (daemon, network and Redis-process faults), issue 11 (Redis's side: a stepped Redis
clock, a Sentinel failover that loses the last writes, kill -9 under ``appendfsync everysec``,
an empty restart; one term per tenure) and issue 12 (a stopped process group, a frozen host:
never two leader-only children at once) and issue 15 (many leases: the ``leases`` setup, its
checks per lease in ``lease_checks.py``). Setups: ``tests/chaos/setups.py``.

Full run: ``python -m tests.chaos --minutes 16 --seed 7001 --runs 2 --report docs/reliability.md``.
"""
