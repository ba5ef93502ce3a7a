"""Which server the Sentinels name master now, as acquire.lua checks it before a grant.

Connections can reach a master Sentinel has replaced (a connect that raced the switch, a
client that missed the announcement): that server stays writable until Sentinel's next INFO
refresh of it, seconds later, and would grant a tenure the new master never sees. So before
every acquire that may grant, the daemon asks every configured Sentinel, in parallel,
``SENTINEL GET-MASTER-ADDR-BY-NAME`` (the failover leader names the promoted replica from
``+promoted-slave`` on, the others from their ``+switch-master``), then that address itself
its ``run_id`` (INFO server), and passes the run_id to acquire.lua, which grants only on the
server with that run_id.

Why not the ``runid`` that ``SENTINEL MASTER`` reports: Sentinel forgets it at the switch and
learns the new master's at its next INFO refresh, up to ten seconds later (measured: 9 s of
an empty runid after SENTINEL FAILOVER, Redis 7.0), and after a plain restart it keeps the
dead process's run_id as long. The server at the named address knows its own at once.

A grant needs a majority of the configured Sentinels naming one address, as Sentinel's own
failover needs a majority to be authorised: two daemons on either side of a partition cannot
both hear a majority name their master, so a minority of Sentinels left with a replaced
master (which nobody can then demote) grants nothing through it. The asks run in parallel
and the first majority decides: a Sentinel that is down or slow delays no grant while the
others agree (each ask is bounded, without redis-py's reconnect retries).

No usable answer means no grant (``REFUSE``): fewer than a majority named one address (no
Sentinel answered; a switch that reached some Sentinels only: seconds); the named server did
not answer INFO. Renewals of a held tenure never wait on this.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

Address = tuple[str, int]
REFUSE = "-"  # acquire.lua's ARGV[12] when no master could be established: never a run_id


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_address(reply: Any) -> Address | None:
    """``GET-MASTER-ADDR-BY-NAME``'s reply as an address; None for none or malformed."""
    if isinstance(reply, list | tuple) and len(reply) == 2 and _text(reply[1]).isdigit():
        return _text(reply[0]), int(_text(reply[1]))
    return None


def majority(configured: int) -> int:
    """How many Sentinels must name one address: more than half of those configured."""
    return configured // 2 + 1


def agreed(answers: Sequence[Address | None], configured: int) -> Address | None:
    """The address a majority of the ``configured`` Sentinels names; None when none does."""
    votes: dict[Address, int] = {}
    for answer in answers:
        if answer is not None:
            votes[answer] = votes.get(answer, 0) + 1
    winners = [a for a, n in votes.items() if n >= majority(configured)]
    return winners[0] if len(winners) == 1 else None


@dataclass
class SentinelMasters:
    """Asks the Sentinels, then the server they name; clients kept between calls."""

    addresses: Sequence[Address]
    service: str
    password: str | None
    timeout: float
    server_kwargs: dict[str, Any]  # credentials and TLS of the service's servers

    def __post_init__(self) -> None:
        # one try per ask: a Sentinel that is down must not hold the others' answer up
        self._sentinels = [aioredis.Redis(host=h, port=p, password=self.password,
                                          socket_connect_timeout=self.timeout,
                                          socket_timeout=self.timeout,
                                          retry=Retry(NoBackoff(), 0))
                           for h, p in self.addresses]
        self._servers: dict[Address, Any] = {}

    async def current(self) -> str:
        """The run_id of the master the Sentinels name now, or ``REFUSE``."""
        address = await self._majority_address()
        if address is None:
            return REFUSE
        server = self._servers.get(address)
        if server is None:
            server = self._servers[address] = aioredis.Redis(
                host=address[0], port=address[1], **self.server_kwargs)
        try:
            info = await server.execute_command("INFO", "server")
        except (RedisError, OSError, TimeoutError):
            return REFUSE
        run_id = info.get("run_id") if isinstance(info, dict) else None
        return str(run_id) if run_id else REFUSE

    async def _majority_address(self) -> Address | None:
        """The first address a majority names, without waiting for the rest; None when the
        answers cannot reach a majority any more, or the asks ran out of time."""
        asks = [asyncio.ensure_future(self._ask(s)) for s in self._sentinels]
        answers: list[Address | None] = []
        try:
            async with asyncio.timeout(self.timeout):
                for next_answer in asyncio.as_completed(asks):
                    answers.append(await next_answer)
                    address = agreed(answers, len(asks))
                    if address is not None:
                        return address
        except TimeoutError:
            pass
        finally:
            for ask in asks:
                ask.cancel()
        return None

    async def _ask(self, sentinel: Any) -> Address | None:
        try:
            return parse_address(await sentinel.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service))
        except (RedisError, OSError, TimeoutError):
            return None

    async def aclose(self) -> None:
        for client in [*self._sentinels, *self._servers.values()]:
            with contextlib.suppress(Exception):  # closing is best effort
                await client.aclose()
