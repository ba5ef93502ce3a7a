"""An election on redis-py's ``Lock``, as teams write it by hand: ``python -m
coordinator.bench.peers.redis_lock_peer URL KEY NODE defaults|matched``.

The lock holder leads. Followers block in ``acquire`` (redis-py polls every ``sleep``); the
leader's thread extends the lock every retry period. At redis-py's defaults the lock has no
TTL (``timeout=None``) and so needs no extending; ``sleep`` is 0.1 s.
"""

from __future__ import annotations

import sys
import threading

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from coordinator.bench.peers.protocol import MATCHED_RETRY, MATCHED_TTL, say, stop_on_sigterm


def lock_key(prefix: str) -> str:
    """The Redis key of the election lock."""
    return prefix + ":leader"


def _extend(lock: Lock, stop: threading.Event, lost: threading.Event) -> None:
    while not stop.wait(MATCHED_RETRY):
        try:
            lock.extend(MATCHED_TTL, replace_ttl=True)
        except LockError:
            lost.set()
            return


def main(url: str, prefix: str, node: str, variant: str) -> None:
    """Follow until the lock is ours, lead while it stays ours, release it on SIGTERM."""
    stop = stop_on_sigterm()
    client = redis.Redis.from_url(url)
    if variant == "matched":
        lock = client.lock(lock_key(prefix), timeout=MATCHED_TTL, sleep=MATCHED_RETRY,
                           thread_local=False)
    else:
        lock = client.lock(lock_key(prefix), thread_local=False)
    say("ready", node=node)
    while not stop.is_set():
        if not lock.acquire(blocking=True, blocking_timeout=1.0):
            continue
        say("leading", node=node)
        lost = threading.Event()
        if lock.timeout is not None:
            threading.Thread(target=_extend, args=(lock, stop, lost), daemon=True).start()
        while not stop.is_set() and not lost.is_set():
            stop.wait(0.05)
        if lost.is_set():
            say("lost", node=node)
            continue
        try:
            lock.release()
            say("released", node=node)
        except LockError:
            say("lost", node=node)


if __name__ == "__main__":
    main(*sys.argv[1:5])
