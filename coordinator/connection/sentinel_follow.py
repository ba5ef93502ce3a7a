"""Follows Sentinel's own announcements that the service's master changed.

A failover without replica acknowledgement can lose a leader's last grant, and Sentinel
demotes a reachable old master only at its next INFO refresh (about ten seconds on): until
then the old master keeps renewing the old tenure and accepting its fenced writes while
another node is granted a term on the new one. No script on the old master can see that, so
the daemon listens to Sentinel instead, on every configured Sentinel at once (each switches
at its own moment, and a client may ask any of them), for the two announcements that come
no later than the first client can be sent to the new master:

- ``+promoted-slave`` (``slave <ip>:<port> <ip> <port> @ <service> <old-ip> <old-port>``):
  the failover leader saw its replica answer as master; from that instant (state
  reconf-slaves, sentinel.c ``sentinelGetCurrentMasterAddress``) it names the promoted
  replica to ``SENTINEL get-master-addr-by-name``. The failover cannot be undone from here.
- ``+switch-master`` (``<service> <old-ip> <old-port> <new-ip> <new-port>``): any Sentinel
  took the new configuration (the leader at the failover's end, the others from its hello
  messages); from then ``SENTINEL MASTERS``, which redis-py asks, names the new master.

The announcement is advisory in the same way as the events channel: whoever may PUBLISH on
a Sentinel could forge one, and all it can do is make this daemon leave leadership and ask
the named server (the next renewal decides). The wire format is parsed by a plain function.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

SWITCH_CHANNELS = ("+promoted-slave", "+switch-master")
# a Sentinel silent this long is pinged; one that answers nothing for twice as long is
# given up and dialled again (a half-open link would otherwise hide every announcement)
QUIET_PING_S = 2.0
RETRY_CAP_S = 2.0

Address = tuple[str, int]


@dataclass(frozen=True)
class MasterSwitch:
    """One announcement that ``service``'s master is now ``new``."""

    event: str
    service: str
    old: Address | None
    new: Address
    sentinel: Address


def _address(host: str, port: str) -> Address | None:
    return (host, int(port)) if port.isdigit() else None


def parse_announcement(channel: str, data: str, sentinel: Address) -> MasterSwitch | None:
    """The switch a Sentinel message announces, or None (another event, or malformed)."""
    words = data.split()
    if channel == "+switch-master" and len(words) == 5:
        old, new = _address(words[1], words[2]), _address(words[3], words[4])
        return MasterSwitch(channel, words[0], old, new, sentinel) if new else None
    if channel == "+promoted-slave" and len(words) == 8 and words[0] == "slave" and words[4] == "@":
        new, old = _address(words[2], words[3]), _address(words[6], words[7])
        return MasterSwitch(channel, words[5], old, new, sentinel) if new else None
    return None


class SentinelFollower:
    """One subscription per Sentinel; ``on_switch`` hears each announcement for ``service``
    (the same switch several times: once per event and Sentinel; the caller deduplicates)."""

    def __init__(self, addresses: Sequence[Address], service: str, *, password: str | None,
                 timeout: float, on_switch: Callable[[MasterSwitch], None], log: Any) -> None:
        self._addresses = list(addresses)
        self._service = service
        self._password = password
        self._timeout = timeout
        self._on_switch = on_switch
        self.log = log

    async def run(self) -> None:
        """Follow every Sentinel until cancelled."""
        await asyncio.gather(*(self._follow(a) for a in self._addresses))

    async def _follow(self, sentinel: Address) -> None:
        delay = 0.1
        while True:
            client = aioredis.Redis(host=sentinel[0], port=sentinel[1], password=self._password,
                                    socket_connect_timeout=self._timeout,
                                    socket_timeout=self._timeout, decode_responses=True)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(*SWITCH_CHANNELS)
                self.log.debug("sentinel.following", sentinel=f"{sentinel[0]}:{sentinel[1]}")
                delay = 0.1
                await self._listen(pubsub, sentinel)
            except (RedisError, OSError, TimeoutError) as e:  # a Sentinel's trouble is never fatal
                self.log.debug("sentinel.follow_failed", sentinel=f"{sentinel[0]}:{sentinel[1]}",
                               error=str(e) or type(e).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(RETRY_CAP_S, delay * 2)

    async def _listen(self, pubsub: Any, sentinel: Address) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            now = loop.time()
            if message is not None:
                heard, pinged = now, False
                switch = parse_announcement(str(message.get("channel")), str(message.get("data")),
                                            sentinel)
                if switch is not None and switch.service == self._service:
                    try:
                        self._on_switch(switch)
                    except Exception:  # the follower outlives a bug in its listener
                        self.log.exception("sentinel.switch_failed", announcement=switch.event)
            elif now - heard > 2 * QUIET_PING_S and pinged:
                raise TimeoutError("the Sentinel answered no PING")
            elif now - heard > QUIET_PING_S and not pinged:
                await pubsub.ping()
                pinged = True
