"""Fenced writes (issue 14): a refused write raises by default; DEL, HSET and INCRBY are
fenced like SET; the SQL pattern fences rows with the term."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from coordinator import FencedWriteRefused
from coordinator.errors import CoordinatorError
from coordinator.protocol import keys
from coordinator.protocol.lease import Lease

KEY = keys.fenced_key("coordinator", "job")


def _lease(redis: Any, holder: str) -> Lease:
    return Lease(redis, holder_id=holder, ttl=30, instance_id=f"i-{holder}")


async def _two_tenures(redis: Any) -> tuple[Lease, int, Lease, int]:
    """a led under term_a, then b took over under term_b (a's tenure is stale)."""
    a, b = _lease(redis, "a"), _lease(redis, "b")
    term_a = (await a.acquire()).term
    await a.release()
    term_b = (await b.acquire()).term
    assert term_b > term_a
    return a, term_a, b, term_b


async def test_a_refused_write_raises_a_dedicated_error_and_a_flag_returns_it(redis: Any) -> None:
    a, term_a, _, term_b = await _two_tenures(redis)
    with pytest.raises(FencedWriteRefused) as raised:
        await a.fenced_set(KEY, "late", term_a)
    assert isinstance(raised.value, CoordinatorError)
    assert raised.value.key == KEY
    assert raised.value.result.current_term == term_b
    result = await a.fenced_set(KEY, "late", term_a, raise_on_refused=False)
    assert (result.accepted, result.current_term) == (False, term_b)
    assert await redis.get(KEY) is None


async def test_del_hset_incrby_are_fenced_like_set(redis: Any) -> None:
    a, term_a, b, term_b = await _two_tenures(redis)
    counter, table = keys.fenced_key("coordinator", "n"), keys.fenced_key("coordinator", "h")
    assert (await b.fenced_incrby(counter, 5, term_b)).value == 5
    assert (await b.fenced_incrby(counter, -2, term_b)).value == 3
    assert (await b.fenced_hset(table, {"owner": "b", "n": 1}, term_b)).value == 2
    assert (await b.fenced_set(KEY, "b", term_b)).value == 1
    for write in (a.fenced_incrby(counter, 1, term_a), a.fenced_hset(table, {"owner": "a"}, term_a),
                  a.fenced_delete(KEY, term_a), a.fenced_delete(table, term_a)):
        with pytest.raises(FencedWriteRefused):
            await write
    assert await redis.get(counter) == b"3"
    assert await redis.hgetall(table) == {b"owner": b"b", b"n": b"1"}
    assert await redis.get(KEY) == b"b"
    assert (await b.fenced_delete(table, term_b)).value == 1
    assert (await b.fenced_delete(table, term_b)).value == 0
    assert await redis.exists(table) == 0


def _fenced_update(db: sqlite3.Connection, job: str, value: str, term: int) -> bool:
    """The SQL pattern: each row carries the term that wrote it last; a write lands only
    with a term at least as large, in the same statement (no read-then-write race)."""
    with db:
        cursor = db.execute(
            "UPDATE jobs SET value = :value, fence_term = :term"
            " WHERE name = :job AND fence_term <= :term",
            {"value": value, "term": term, "job": job})
    return cursor.rowcount == 1


async def test_sql_writes_are_fenced_with_the_term(redis: Any) -> None:
    _, term_a, _, term_b = await _two_tenures(redis)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE jobs (name TEXT PRIMARY KEY, value TEXT, fence_term INTEGER NOT NULL)")
    db.execute("INSERT INTO jobs VALUES ('nightly', NULL, 0)")
    assert _fenced_update(db, "nightly", "from a", term_a)
    assert _fenced_update(db, "nightly", "from b", term_b)
    # a paused old leader wakes up and writes with its old term: refused by the database
    assert not _fenced_update(db, "nightly", "late a", term_a)
    assert db.execute("SELECT value, fence_term FROM jobs").fetchone() == ("from b", term_b)


PUSH = """
redis.call('RPUSH', KEYS[1], ARGV[1])
return redis.call('LLEN', KEYS[1])
"""


async def test_a_users_own_lua_snippet_runs_fenced(redis: Any) -> None:
    a, term_a, b, term_b = await _two_tenures(redis)
    log = keys.fenced_key("coordinator", "log")
    assert (await b.fenced_eval(PUSH, term_b, keys=[log], args=["b1"])).value == 1
    assert (await b.fenced_eval(PUSH, term_b, keys=[log], args=["b2"])).value == 2
    with pytest.raises(FencedWriteRefused) as raised:
        await a.fenced_eval(PUSH, term_a, keys=[log], args=["late"])
    assert raised.value.key == log and raised.value.result.current_term == term_b
    refused = await a.fenced_eval(PUSH, term_a, keys=[log], args=["late"], raise_on_refused=False)
    assert (refused.accepted, refused.value) == (False, None)
    assert await redis.lrange(log, 0, -1) == [b"b1", b"b2"]


async def test_the_expiry_is_px_ms_and_px_stays_as_its_old_name(redis: Any) -> None:
    _, _, b, term_b = await _two_tenures(redis)
    await b.fenced_set(KEY, "v", term_b, px_ms=60_000)
    assert 0 < await redis.pttl(KEY) <= 60_000
    await b.fenced_set(KEY, "v", term_b, px=30_000)
    assert 0 < await redis.pttl(KEY) <= 30_000
    with pytest.raises(CoordinatorError):
        await b.fenced_set(KEY, "v", term_b, px=1, px_ms=1)
