"""The model-checked protocol (model/*.pml): SPIN verifies the fixed design clean and finds a
counterexample for each old bug.

Each case is one check of tests/model_checks.py: ``spin -a``, ``gcc pan.c``, ``./pan``
(safety: assertions and end states; the liveness promise is a bounded-response assertion, see
docs/protocol.md).
A clean check must also be complete: a search cut short by the memory limit proves nothing.
An old-bug check must fail on the assertion that states the broken promise, not on another.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import pytest

from tests.model_checks import CHECKS, Check, ModelChecks

pytestmark = [
    pytest.mark.e2e,  # runs in the full suite (spin + gcc + a search), not in the quick subset
    pytest.mark.skipif(shutil.which("spin") is None,
                       reason="spin is not installed (scripts/test.sh installs Debian's spin package)"),
]


@pytest.fixture(scope="module")
def outputs() -> Iterator[dict[str, str]]:
    """Every check's output, two at a time (the machine has two cores), the big searches first."""
    checks = ModelChecks()
    try:
        yield checks.outputs()
    finally:
        checks.close()


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_model_check(check: Check, outputs: dict[str, str]) -> None:
    out = outputs[check.name]
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
