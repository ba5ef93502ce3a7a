"""The bench's labels say what each figure and yardstick is, not an internal reference."""

from __future__ import annotations

from coordinator.bench.report import rows


def test_bench_labels_name_what_they_measure() -> None:
    cpu = {"renew": {"usec_per_call": 4.0}, "bare_evalsha": {"usec_per_call": 1.0},
           "reference_lease_like": {"usec_per_call": 5.0}}
    table = rows({"redis_cpu": cpu})
    labels = " ".join(cell for row in table for cell in row).lower()
    assert "issue" not in labels and "reference" not in labels
    assert any("TIME, HGET, HSET, INCR, PEXPIRE" in row[0] for row in table)
