"""The leader lease: acquire-or-renew, release, read and fenced write, one round trip each."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from coordinator.connection.boundary import reading, redis_errors, text_map
from coordinator.errors import (
    CorruptDataError,
    FencedWriteRefused,
    InvalidArgumentError,
    UnexpectedReplyError,
)
from coordinator.protocol import keys
from coordinator.protocol.records import (
    MAX_TERM,
    FenceResult,
    LeaseRecord,
    LeaseResult,
    ReleaseResult,
    pairs_to_dict,
)
from coordinator.protocol.scripts import (
    lua_directory,
    register_scripts,
    run_script,
    run_script_and_wait,
    script_errors,
)

__all__ = ["DEFAULT_HISTORY_MAXLEN", "EPOCH_STEP", "MAX_TERM", "FencedWrite", "Lease",
           "new_instance_id", "read_lease", "ttl_to_ms"]

DEFAULT_HISTORY_MAXLEN = 10_000
# acquire.lua's EPOCH_STEP: how far the first grant on a server with a new identity (a promoted
# replica, a restarted server) jumps over a stored term at or ahead of the clock; it covers 10^8 grants lost in a
# failover's or a restart's window, and leaves (2^53 - 1.8e15) / 10^8 = 7.2e7 such jumps
EPOCH_STEP = 10**8
_MAX_TTL_MS = 365 * 24 * 3600 * 1000
# renew.lua's reply codes as the client gives them (bytes; str after WAIT's decoding)
_RENEW = (b"renew", "renew")
_LOST = (b"lost", "lost")


@dataclass(frozen=True)
class FencedWrite(FenceResult):
    """A ``FenceResult`` with what the write's command replied (None when refused):
    1 for SET, keys removed for DEL, fields added for HSET, the new value for INCRBY,
    the snippet's reply for ``fenced_eval``."""

    value: Any = None


_SNIPPET_MARK = "\n--[[USER SNIPPET]]\n"


def fenced_snippet_source(snippet: str) -> str:
    """The whole script ``Lease.fenced_eval`` runs for ``snippet`` (lua/fence_eval.lua
    with the snippet in its place)."""
    template = (lua_directory() / "fence_eval.lua").read_text(encoding="utf-8")
    if template.count(_SNIPPET_MARK) != 1:
        raise FileNotFoundError("lua/fence_eval.lua lacks its snippet line")
    return template.replace(_SNIPPET_MARK, "\n" + snippet + "\n", 1)


def new_instance_id() -> str:
    """A random id for one process start, so a restart gets a new tenure."""
    return secrets.token_hex(8)


def ttl_to_ms(ttl: float) -> int:
    """Seconds (fractions allowed) to whole milliseconds, refusing non-positive values."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise InvalidArgumentError(f"ttl must be a number of seconds > 0, got {ttl!r}")
    ms = round(ttl * 1000)
    if not 1 <= ms <= _MAX_TTL_MS:
        raise InvalidArgumentError(f"ttl must be between 0.001 s and one year, got {ttl!r}")
    return ms


class Lease:
    """One named leader lease in one namespace, as seen by one holder (one process)."""

    def __init__(
        self,
        redis: Any,
        *,
        holder_id: str,
        ttl: float,
        name: str = "global",
        namespace: str = "coordinator",
        holder_host: str | None = None,
        instance_id: str | None = None,
        history_maxlen: int = DEFAULT_HISTORY_MAXLEN,
    ) -> None:
        self.holder_id = keys.check_node_id("holder id", holder_id)
        self.holder_host = holder_host if holder_host is not None else socket.gethostname()
        self.name = keys.check_name("lease name", name)
        self.namespace = keys.check_name("namespace", namespace)
        self.ttl_ms = ttl_to_ms(ttl)
        self.instance_id = instance_id or new_instance_id()
        if not isinstance(history_maxlen, int) or history_maxlen < 1:
            raise InvalidArgumentError(f"history_maxlen must be an integer >= 1, got {history_maxlen!r}")
        self.history_maxlen = history_maxlen
        self.key = keys.lease_key(namespace, name)
        self.tenure_key = keys.tenure_key(namespace, name)
        self.history_key = keys.history_key(namespace)
        self.mode_key = keys.automation_mode_key(namespace)
        self.channel = keys.events_channel(namespace)
        self._no_controller_key = keys.no_controller_key(namespace)
        self._redis = redis
        self._scripts = register_scripts(redis)
        self._held: LeaseRecord | None = None  # the record as of this process's last acquire
        # the highest term of this instance this object released: acquire.lua never resumes
        # a tenure at or below it (a release lost in a failover must not give that term back)
        self._released_through = 0
        # the highest term any reply showed: a lease this process gets back after Redis lost
        # its grant (failover, empty restart) must carry a larger term than its old writes
        self._highest_term = 0
        # the node the last "held" reply said the lease is reserved for: the next acquire
        # passes its controller hash, so a reservation for a dead node ends early
        self._reserved_for: str | None = None
        # the hot path's arguments, encoded once (the client would encode them on every call)
        self._renew_keys = [self.key, self.mode_key]
        self._renew_args = [self.holder_id.encode(), self.instance_id.encode(),
                            str(self.ttl_ms).encode()]
        self._renew_call = self._scripts.renew.prepared(self._renew_keys, self._renew_args)
        self._snippets: dict[str, Any] = {}  # fenced_eval's scripts, one per snippet

    @property
    def client(self) -> Any:
        """The Redis client this lease's scripts run on."""
        return self._redis

    async def acquire(
        self,
        *,
        highest_seen_term: int = 0,
        metadata: dict[str, Any] | None = None,
        preferred_holder_id: str | None = None,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 100,
        master: Callable[[], Awaitable[str]] | None = None,
    ) -> LeaseResult:
        """Acquire the lease if free, renew it if ours; otherwise report who holds it.

        A new tenure's term is larger than the stored term, than ``highest_seen_term``, than
        every term this object saw in a reply, and at least the Redis server's clock in ms.
        With ``wait_replicas``, the same round trip WAITs for that many replicas to have the
        write (``LeaseResult.replicas_acked``): a lease only the master knows can be lost in
        a failover. With ``master`` (asked just before a grant may happen, never for this
        process's own renewal: what the Sentinels name, sentinel_master.py), a new tenure
        is granted only by that server: ``NotCurrentMasterError`` otherwise.
        """
        if isinstance(highest_seen_term, bool) or not isinstance(highest_seen_term, int) or not (
            0 <= highest_seen_term < MAX_TERM - 1
        ):
            raise InvalidArgumentError(
                f"highest_seen_term must be an int from 0 to 2**53 - 2, got {highest_seen_term!r}")
        if preferred_holder_id:
            keys.check_node_id("preferred holder id", preferred_holder_id)
        if self._held is not None:
            renewed = await self._renew(wait_replicas, wait_timeout_ms)
            if renewed is not None:
                return renewed
        master_run_id = await master() if master is not None else ""
        reserved_for = self._reserved_for
        call_keys = [self.key, self.tenure_key, self.history_key, self.mode_key,
                     self._controller_key(reserved_for)]
        call_args = [
            self.holder_id,
            self.holder_host,
            self.instance_id,
            self.ttl_ms,
            max(highest_seen_term, self._highest_term),
            json.dumps(metadata, separators=(",", ":")) if metadata else "{}",
            preferred_holder_id or "",
            self.name,
            self.channel,
            self.history_maxlen,
            reserved_for or "",
            master_run_id,
            self._released_through,
        ]
        reply, acked = await self._call(self._scripts.acquire, call_keys, call_args,
                                        wait_replicas, wait_timeout_ms)
        code, now, mode = reply[0], int(reply[1]), str(reply[2] or "running")
        if code == "renew":
            record = self._renewed(reply, fallback=(metadata, preferred_holder_id))
        elif code in ("acquire", "held"):
            record = LeaseRecord.from_fields(self.key, pairs_to_dict(reply[3:]))
        else:
            raise UnexpectedReplyError(f"acquire replied {code!r}")
        self._saw_term(record.term)
        self._held = record if code != "held" else None
        self._reserved_for = record.holder_id if record.reserved else None
        return LeaseResult(is_leader=code != "held", operation=None if code == "held" else code,
                           record=record, redis_now=now, automation_mode=mode,
                           replicas_acked=acked)

    def forget_held(self) -> None:
        """Send the next acquire through acquire.lua (with its Sentinel check), not renew.lua:
        after a followed master switch the tenure may live on only on the replaced master."""
        self._held = None

    async def _renew(self, wait_replicas: int, wait_timeout_ms: int) -> LeaseResult | None:
        """The leader's hot path (renew.lua); None if the lease is no longer ours.

        Its reply is read as the client parsed it (times and term are integer replies), not
        decoded element by element as ``run_script`` does for the other scripts."""
        if wait_replicas > 0:
            reply, acked = await run_script_and_wait(
                self._scripts.renew, self._renew_keys, self._renew_args,
                replicas=wait_replicas, timeout_ms=wait_timeout_ms)
        else:
            acked = None
            try:
                reply = await self._renew_call()
            except Exception:
                # translated only when raised: the happy path of a try costs nothing
                with redis_errors(self.key), script_errors():
                    raise
        code = reply[0] if type(reply) is list and reply else None
        if code in _RENEW and len(reply) == 5:
            now, mode, term, expires = reply[1], reply[2], reply[3], reply[4]
            if type(now) is int and type(term) is int and type(expires) is int:
                if type(mode) is bytes:
                    mode = mode.decode("utf-8", "replace")
                return self._renewal(now, str(mode or "running"), term, expires, acked)
        elif code in _LOST:
            self._held = None
            return None
        raise UnexpectedReplyError(f"renew replied {reply!r}")

    @property
    def believes_held(self) -> bool:
        """Whether this object's last acquire or renewal left the lease with this process
        (its next ``acquire`` renews; after ``forget_held`` or a loss it acquires anew)."""
        return self._held is not None

    def renewed_together(self, *, redis_now: int, automation_mode: str, term: int,
                         lease_expires_at: int) -> LeaseResult:
        """Take a renewal made for this lease by ``renew_many.lua`` (one node renewing every
        lease it holds in one call) as if ``acquire`` had renewed it."""
        return self._renewal(redis_now, automation_mode, term, lease_expires_at, None)

    def lost_together(self) -> None:
        """``renew_many.lua`` found the lease no longer this process's: acquire next time."""
        self._held = None

    def _renewal(self, now: int, mode: str, term: int, expires: int,
                 acked: int | None) -> LeaseResult:
        held = self._held
        if held is not None and held.term == term:  # the usual case, inline: every renewal
            record = self._held = held.renewed(expires, now)
        else:
            record = self._renewed(["renew", now, mode, term, None, expires])
        if term > self._highest_term:
            self._highest_term = term
        # positional: keywords cost a third more, and this runs on every renewal
        return LeaseResult(True, "renew", record, now, mode, acked)

    def _saw_term(self, term: int | None) -> None:
        if term is not None and term > self._highest_term:
            self._highest_term = term

    def _controller_key(self, node_id: str | None) -> str:
        return keys.controller_key(self.namespace, node_id) if node_id else self._no_controller_key

    async def _call(self, script: Any, call_keys: list[str], call_args: list[Any],
                    wait_replicas: int, wait_timeout_ms: int) -> tuple[list[Any], int | None]:
        if wait_replicas > 0:
            return await run_script_and_wait(script, call_keys, call_args,
                                             replicas=wait_replicas, timeout_ms=wait_timeout_ms)
        return await run_script(script, call_keys, call_args), None

    def _renewed(self, reply: list[Any],
                 fallback: tuple[dict[str, Any] | None, str | None] = (None, None)) -> LeaseRecord:
        """The record after a renewal: the reply carries only what moved
        (renew, now, mode, term, acquired_at or None, lease_expires_at)."""
        try:
            now, term, expires = int(reply[1]), int(reply[3]), int(reply[5])
        except (IndexError, TypeError, ValueError) as e:
            raise UnexpectedReplyError(f"renew replied {reply!r}") from e
        held = self._held
        if held is not None and term < held.term:
            # terms never go back: the lease hash was written by someone else
            raise CorruptDataError(self.key, f"field 'term' went back from {held.term} to {term}"
                                   " under a renewal")
        if held is None or held.term != term:  # e.g. another Lease object of this instance
            held = LeaseRecord(
                holder_id=self.holder_id, holder_host=self.holder_host,
                instance_id=self.instance_id, term=term, lease_expires_at=expires,
                renewed_at=now, acquired_at=int(reply[4] or 0),
                preferred_holder_id=fallback[1] or None, metadata=fallback[0] or {})
        self._held = LeaseRecord(  # positional, not dataclasses.replace: this runs every renewal
            held.holder_id, held.holder_host, held.instance_id, held.term, expires, now,
            held.acquired_at, held.preferred_holder_id, held.metadata, held.reserved)
        return self._held

    async def release(self, *, term: int | None = None, handoff_to: str | None = None) -> ReleaseResult:
        """Release the lease if this process holds it (for ``term``, if given).

        With ``handoff_to``, the lease is reserved for that node for one TTL, so the handover
        goes to it and not to whichever standby is fastest, provided its controller record
        says it is alive (checked atomically with the release); a dead or unknown target gets
        no reservation, so every standby may take the lease (``ReleaseResult.handoff_refused``
        says why).
        """
        if handoff_to is not None:
            keys.check_node_id("handover target", handoff_to)
        reply = await run_script(
            self._scripts.release,
            [self.key, self.history_key, self.tenure_key, keys.handoff_key(self.namespace, self.name),
             self._controller_key(handoff_to)],
            [
                self.holder_id,
                self.instance_id,
                "" if term is None else str(int(term)),
                self.name,
                self.channel,
                self.history_maxlen,
                handoff_to or "",
                self.ttl_ms,
            ],
        )
        code, now = reply[0], int(reply[1])
        if code == "released":
            if len(reply) != 4:
                raise UnexpectedReplyError(f"release replied {reply!r}")
            held = self._held
            self._released_through = max(self._released_through, self._highest_term,
                                         0 if held is None else held.term, term or 0)
            self._held = None
            return ReleaseResult(released=True, current=None, redis_now=now,
                                 reserved_for=reply[2] or None, handoff_refused=reply[3] or None)
        if code != "not_holder":
            raise UnexpectedReplyError(f"release replied {code!r}")
        fields = pairs_to_dict(reply[2:])
        current = LeaseRecord.from_fields(self.key, fields) if fields else None
        if current is not None:
            self._saw_term(current.term)
        return ReleaseResult(released=False, current=current, redis_now=now)

    async def get(self) -> LeaseRecord | None:
        """The current lease record, or None when nobody holds the lease."""
        return await read_lease(self._redis, self.namespace, self.name)

    async def fenced_set(
        self, key: str, value: str | bytes, term: int, *, px_ms: int | None = None,
        raise_on_refused: bool = True, px: int | None = None,
    ) -> FencedWrite:
        """SET ``key`` only while this process's tenure ``term`` is the live lease, atomically.

        The live lease must carry ``term`` and this Lease's holder and instance id: a term
        alone could be shared by two tenures after a failover that lost writes. A refused
        write raises ``FencedWriteRefused`` (``raise_on_refused=False``: it returns the
        result, ``accepted`` False). ``px_ms``: expiry in milliseconds (``px``: the same,
        its old name).
        On Redis Cluster ``key`` must share the namespace's hash tag (see ``keys.fenced_key``).
        """
        if px is not None:
            if px_ms is not None:
                raise InvalidArgumentError("give px_ms or px (its old name), not both")
            px_ms = px
        px = px_ms
        if px is not None and (isinstance(px, bool) or not isinstance(px, int) or px < 0):
            raise InvalidArgumentError(f"px must be milliseconds, an int >= 0, got {px!r}")
        return await self._fenced("set", key, term, [value, px or 0], [], raise_on_refused)

    async def fenced_delete(self, key: str, term: int, *,
                            raise_on_refused: bool = True) -> FencedWrite:
        """DEL ``key`` (of any type) only while ``term`` is this process's live tenure;
        ``value`` is the number of keys removed (0 or 1)."""
        return await self._fenced("del", key, term, ["", 0], [], raise_on_refused)

    async def fenced_hset(self, key: str, mapping: dict[str, str | bytes | int | float],
                          term: int, *, raise_on_refused: bool = True) -> FencedWrite:
        """HSET ``mapping`` into the hash ``key`` only while ``term`` is this process's live
        tenure; ``value`` is the number of fields added."""
        if not isinstance(mapping, dict) or not mapping:
            raise InvalidArgumentError("fenced_hset needs a non-empty mapping")
        pairs: list[Any] = []
        for field, item in mapping.items():
            if isinstance(item, bool) or not isinstance(item, str | bytes | int | float):
                raise InvalidArgumentError(f"fenced_hset: field {field!r} has a value of type "
                                           f"{type(item).__name__}")
            pairs += [field, item]
        return await self._fenced("hset", key, term, ["", 0], pairs, raise_on_refused)

    async def fenced_incrby(self, key: str, amount: int, term: int, *,
                            raise_on_refused: bool = True) -> FencedWrite:
        """INCRBY ``key`` by ``amount`` only while ``term`` is this process's live tenure;
        ``value`` is the new value."""
        if isinstance(amount, bool) or not isinstance(amount, int) or abs(amount) >= MAX_TERM:
            raise InvalidArgumentError(f"amount must be an int below 2**53 in size, got {amount!r}")
        return await self._fenced("incrby", key, term, ["", 0], [amount], raise_on_refused)

    async def fenced_eval(self, snippet: str, term: int, *, keys: list[str] | tuple[str, ...] = (),
                          args: list[Any] | tuple[Any, ...] = (),
                          raise_on_refused: bool = True) -> FencedWrite:
        """Run the Lua ``snippet`` (its own ``KEYS``/``ARGV``, ``return`` allowed) only while
        ``term`` is this process's live tenure, atomically with that check; ``value`` is its
        reply. The snippet must check its own keys: an error after a write leaves the write.

        It is sent as a script (EVALSHA, EVAL on NOSCRIPT), so the Redis user needs EVAL and
        EVALSHA: a user confined to FCALL of the coordinator's function library cannot run
        it. There, fence with the term instead: keep the term next to the data and write
        only with a term at least as large (in your own Redis function, reading the lease
        hash's ``term``, ``holder_id`` and ``instance_id``; or in SQL:
        ``UPDATE ... WHERE fence_term <= :term``)."""
        if not isinstance(snippet, str) or not snippet.strip():
            raise InvalidArgumentError("fenced_eval needs a Lua snippet")
        if isinstance(term, bool) or not isinstance(term, int) or not 1 <= term < MAX_TERM:
            raise InvalidArgumentError(f"term must be an int from 1 to 2**53 - 1, got {term!r}")
        script = self._snippets.get(snippet)
        if script is None:
            script = self._redis.register_script(fenced_snippet_source(snippet))
            self._snippets[snippet] = script
        reply = await run_script(script, [self.key, *keys],
                                 [term, self.holder_id, self.instance_id, *args])
        return self._fence_outcome(keys[0] if keys else "a fenced snippet", reply, term,
                                   raise_on_refused)

    async def _fenced(self, op: str, key: str, term: int, head: list[Any], tail: list[Any],
                      raise_on_refused: bool) -> FencedWrite:
        if isinstance(term, bool) or not isinstance(term, int) or not 1 <= term < MAX_TERM:
            raise InvalidArgumentError(f"term must be an int from 1 to 2**53 - 1, got {term!r}")
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"fenced_{op} needs a non-empty key")
        reply = await run_script(
            self._scripts.fence, [self.key, key],
            [term, *head, self.holder_id, self.instance_id, op, *tail],
        )
        result = self._fence_outcome(key, reply, term, raise_on_refused)
        if result.value is not None:
            return FencedWrite(result.accepted, result.term, result.current_term,
                               result.redis_now, int(result.value))
        return result

    def _fence_outcome(self, key: str, reply: list[Any], term: int,
                       raise_on_refused: bool) -> FencedWrite:
        code, now = reply[0], int(reply[1])
        if code not in ("ok", "stale"):
            raise UnexpectedReplyError(f"fence replied {code!r}")
        current = int(reply[2]) if reply[2] not in ("", None) else None
        self._saw_term(current)
        value = reply[3] if code == "ok" and len(reply) > 3 else None
        result = FencedWrite(accepted=code == "ok", term=term, current_term=current,
                             redis_now=now, value=value)
        if not result.accepted and raise_on_refused:
            raise FencedWriteRefused(key, result)
        return result


async def read_lease(redis: Any, namespace: str, name: str) -> LeaseRecord | None:
    """Read the current lease of ``namespace``/``name`` without holding it."""
    key = keys.lease_key(namespace, name)
    with reading(key, "a lease"):
        raw = await redis.hgetall(key)
    return LeaseRecord.from_fields(key, text_map(raw)) if raw else None
