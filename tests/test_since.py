"""Every bad `events --since` gets exit 2 and one line naming the value; the parser never
raises anything but InvalidArgumentError, whatever it is fed."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.errors import InvalidArgumentError
from coordinator.watching.history import parse_since
from tests.processes import coordinator
from tests.redis_server import RedisServer


@given(st.text(max_size=60))
@settings(max_examples=400, deadline=None)
def test_the_parser_refuses_anything_it_cannot_use_with_one_error(value: str) -> None:
    try:
        parsed = parse_since(value)
    except InvalidArgumentError as e:
        assert repr(value) in str(e)
    else:
        assert parsed.start_id is not None or (parsed.age_ms is not None and parsed.age_ms > 0)


@given(st.from_regex(r"\A[0-9]{1,400}(\.[0-9]{1,50})?(ms|s|m|h|d)\Z"))
@settings(max_examples=200, deadline=None)
def test_any_number_with_a_unit_is_a_duration_or_a_clear_refusal(value: str) -> None:
    try:
        assert parse_since(value).age_ms is not None
    except InvalidArgumentError as e:
        assert repr(value) in str(e)


@pytest.mark.parametrize("value", ["0s", "0.0001ms", "9" * 400 + "d", "1e400s", "99999999999d",
                                   "-5m", "10 minutes", "99999999999999999999-0",
                                   "18446744073709551615-18446744073709551615", "12-", "-0"])
def test_bad_values_are_refused(value: str) -> None:
    with pytest.raises(InvalidArgumentError, match="since"):
        parse_since(value)


@pytest.mark.e2e
def test_every_bad_since_exits_2_with_one_line_naming_it(redis_server: RedisServer) -> None:
    future = f"{(int(time.time()) + 3600) * 1000}-0"
    for value in ["9" * 30 + "d", "99999999999999999999-0", "18446744073709551615-18446744073709551615",
                  "0s", "-5m", future]:
        done = coordinator("events", f"--since={value}", redis_url=redis_server.url)
        assert done.returncode == 2, (value, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and value in lines[0] and "Traceback" not in done.stderr, done.stderr
    ok = coordinator("events", "--since", "10m", redis_url=redis_server.url)
    assert ok.returncode == 0, ok.stderr
