"""An election on tooz's Redis driver: ``python -m coordinator.bench.peers.tooz_peer URL PREFIX
NODE defaults|matched``.

Members join a group and ``watch_elected_as_leader``; the loop calls ``run_watchers`` (which
runs ``run_elect_coordinator``) every retry period. At tooz's defaults the lock and membership
timeouts are 30 s and tooz's own heart thread beats every half timeout; at matched settings
they are 2 s and the loop itself beats (``heartbeat()``) every 0.5 s. tooz has no release
notification and its Redis driver does not implement ``get_leader``. The ``released`` line is
printed as ``stop()`` is called, since the lock is released somewhere inside it.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any
from urllib.parse import quote

from coordinator.bench.peers.protocol import MATCHED_RETRY, MATCHED_TTL, say, stop_on_sigterm

GROUP = b"bench"


def lock_key(prefix: str) -> str:
    """The Redis key of tooz's leader lock for the group."""
    return f"{prefix}_leader_of_{GROUP.decode()}_lock"


def coordinator_url(url: str, prefix: str, variant: str) -> str:
    """tooz's URL: our Redis, the bench's key prefix, and the variant's timeouts."""
    options = f"namespace={quote(prefix)}"
    if variant == "matched":
        ttl = int(MATCHED_TTL)
        options += f"&timeout={ttl}&lock_timeout={ttl}&membership_timeout={ttl}"
    return url + ("&" if "?" in url else "?") + options


def main(url: str, prefix: str, node: str, variant: str) -> None:
    """Join, run the watchers until SIGTERM, then stop (which releases the leader lock)."""
    from tooz import coordination  # only in the peer process: tooz is an optional extra

    stop = stop_on_sigterm()
    coord = coordination.get_coordinator(coordinator_url(url, prefix, variant), node.encode())
    coord.start(start_heart=variant == "defaults")
    with contextlib.suppress(coordination.GroupAlreadyExist):
        coord.create_group(GROUP).get()
    coord.join_group(GROUP).get()
    leading = False

    def elected(event: Any) -> None:
        nonlocal leading
        leading = True
        say("leading", node=node)

    coord.watch_elected_as_leader(GROUP, elected)
    say("ready", node=node)
    while not stop.wait(MATCHED_RETRY):
        if variant == "matched":
            coord.heartbeat()
        coord.run_watchers()
    if leading:
        # tooz releases the leader lock inside stop(), between leaving the groups and shutting
        # its executor down (which takes ~1 s); stamped as stop() begins, an upper bound
        say("released", node=node)
    coord.stop()


if __name__ == "__main__":
    main(*sys.argv[1:5])
