"""The leader-only child of the chaos daemons: ``coordinator run -- python -m tests.chaos.child``.

It records when it runs, so the checker can tell whether two nodes' children ever ran at
the same time: a start line, then a tick every 20 ms, each stamped with the real wall clock
(it re-executes itself without libfaketime first, so a node's faked clock never shows here).
A second thread does one fenced write of its term every 200 ms through the product's own
client and Lease (the Redis URL comes from ``COORDINATOR_CHILD_PASS_REDIS_URL=true``, Sentinel
from the inherited settings) and records Redis's answer. Lines go to
``$CHAOS_CHILD_DIR/child-<node>-<pid>.jsonl``. SIGTERM: one last line, exit 0 at once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

TICK_S = 0.02
WRITE_EVERY_S = 0.2
_FAKETIME = ("LD_PRELOAD", "FAKETIME_TIMESTAMP_FILE", "FAKETIME_NO_CACHE",
             "FAKETIME_DONT_FAKE_MONOTONIC")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Out:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
        self._lock = threading.Lock()

    def line(self, **fields: Any) -> None:
        with self._lock:
            self._file.write(json.dumps(fields, separators=(",", ":")) + "\n")


def _writer(out: _Out, term: int, node: str) -> None:
    import asyncio

    async def run() -> None:
        from coordinator import Lease
        from coordinator.connection.backend import connect
        from coordinator.protocol import keys
        from coordinator.settings import load_settings

        settings = load_settings()
        client = connect(settings, op_timeout=0.3)
        key = keys.fenced_key(settings.namespace, "child")
        instance = os.environ.get("COORDINATOR_INSTANCE_ID")
        seq = 0
        while True:
            seq += 1
            try:
                if instance is None:  # the tenure this child was started for: its daemon's
                    raw = await client.hgetall(keys.lease_key(settings.namespace,
                                                              settings.lease_name))
                    lease = {k.decode(): v.decode() for k, v in raw.items()}
                    if lease.get("holder_id") == node and lease.get("term") == str(term):
                        instance = lease.get("instance_id")
                if instance is not None:
                    lease_obj = Lease(client, holder_id=node, ttl=settings.lease_ttl,
                                      name=settings.lease_name, namespace=settings.namespace,
                                      instance_id=instance)
                    value = json.dumps({"node_id": node, "term": term, "seq": seq})
                    result = await lease_obj.fenced_set(key, value, term, raise_on_refused=False)
                    out.line(e="w", t=_now_ms(), term=term, ok=result.accepted,
                             now=result.redis_now, cur=result.current_term, seq=seq)
            except Exception as e:
                out.line(e="wf", t=_now_ms(), error=type(e).__name__)
            await asyncio.sleep(WRITE_EVERY_S)

    asyncio.run(run())


def main() -> None:
    if any(name in os.environ for name in _FAKETIME):
        env = {k: v for k, v in os.environ.items() if k not in _FAKETIME}
        os.execve(sys.executable, [sys.executable, "-m", "tests.chaos.child"], env)
    term = int(os.environ.get("COORDINATOR_TERM", "0"))
    node = os.environ.get("COORDINATOR_NODE_ID", "?")
    directory = os.environ.get("CHAOS_CHILD_DIR", ".")
    out = _Out(os.path.join(directory, f"child-{node}-{os.getpid()}.jsonl"))
    out.line(e="start", t=_now_ms(), pid=os.getpid(), ppid=os.getppid(), term=term, node=node)

    def on_term(signum: int, frame: object) -> None:
        out.line(e="term", t=_now_ms())
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if os.environ.get("COORDINATOR_CHILD_PASS_REDIS_URL", "").lower() in ("1", "true", "yes"):
        threading.Thread(target=_writer, args=(out, term, node), daemon=True).start()
    while True:
        out.line(t=_now_ms())
        time.sleep(TICK_S)


if __name__ == "__main__":
    main()
