"""The chaos harness of issue 6: real processes, faults from a seed, a pure checker, a report.

Full run: ``python -m tests.chaos --minutes 10 --seed N --report docs/reliability.md``.
"""
