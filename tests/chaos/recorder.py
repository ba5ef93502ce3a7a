"""The recorder: what the harness sees of the cluster, straight from Redis (never via a proxy).

- a subscriber on the events channel of every server (it reconnects after a Redis restart;
  the history streams fill in what was published while it was away);
- a poller reading, on every server, the role, the lease (holder, instance, term) and the
  probe record in one MULTI every 20 ms, stamped by Redis's TIME, keeping each change a
  master showed with the time of the read before it (many leases: every lease and its
  probe key ``probe.LEASE`` in the one MULTI, every 50 ms);
- the history stream of every server, read every second and kept (deduplicated), so a
  grant that a failover or an empty restart threw away stays on the record;
- ``coordinator watch --json`` as a user would run it, whose final picture is compared
  with Redis's lease at the end (many leases: it follows the first lease).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from coordinator.protocol import keys
from tests.chaos.recording import Sample
from tests.processes import coordinator_env

POLL_EVERY = 0.02
LEASES_POLL_EVERY = 0.05
NAMESPACE, LEASE = "coordinator", "global"


def _client(port: int) -> Any:
    return redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.3,
                       retry=Retry(NoBackoff(), 0), decode_responses=True)


class Recorder:
    """Records the channel, the lease and the probe record until stopped."""

    def __init__(self, ports: list[int], workdir: Path, probe_name: str,
                 watch_env: dict[str, str] | None = None, leases: list[str] | None = None) -> None:
        self.ports = ports
        self.port = ports[0]  # the server the harness names the master (it moves it)
        self._watch_env = dict(watch_env or {})
        self.workdir = workdir
        # many leases: every lease and its probe key, read in the same MULTI; the watcher
        # follows the first lease (``coordinator watch`` follows one)
        self.leases = list(leases or [])
        self._read = [(lease, keys.lease_key(NAMESPACE, lease),
                       keys.fenced_key(NAMESPACE, f"{probe_name}.{lease}")) for lease in self.leases
                      ] or [(None, keys.lease_key(NAMESPACE, LEASE),
                             keys.fenced_key(NAMESPACE, probe_name))]
        self.probe_key = self._read[0][2]
        self.lease_key = self._read[0][1]
        if self.leases:
            self._watch_env["COORDINATOR_LEASE_NAME"] = self.leases[0]
        # 2 x 32 reads a poll: every 50 ms keeps the recorder's share of two cores small
        self._every = LEASES_POLL_EVERY if self.leases else POLL_EVERY
        self.samples: list[Sample] = []
        self.channel: list[dict[str, Any]] = []
        self.latest: Sample | None = None  # the last read, changed or not (the first lease)
        self.latest_by_lease: dict[str, Sample] = {}  # many leases: the last read of each
        self._stop = threading.Event()
        self._history: dict[str, None] = {}  # raw event JSON, in the order first seen
        self._seen_channel: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._poll, args=(p,), name="chaos-poller",
                                          daemon=True) for p in ports]
        self._threads += [threading.Thread(target=self._subscribe, args=(p,),
                                           name="chaos-subscriber", daemon=True) for p in ports]
        self._threads.append(threading.Thread(target=self._read_histories, name="chaos-history",
                                              daemon=True))
        self._watch_out = workdir / "watch.jsonl"
        self._watcher: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for t in self._threads:
            t.start()
        with self._watch_out.open("wb") as out:
            self._watcher = subprocess.Popen(
                [sys.executable, "-m", "coordinator", "watch", "--json"],
                env=coordinator_env(f"redis://127.0.0.1:{self.port}/0", **self._watch_env),
                stdout=out, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """Stop the threads and the watcher (idempotent, never raises)."""
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=3)
        if self._watcher is not None and self._watcher.poll() is None:
            self._watcher.terminate()
            try:
                self._watcher.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._watcher.kill()
                self._watcher.wait()

    # ---- threads -----------------------------------------------------------------------

    def _poll(self, port: int) -> None:
        client = _client(port)
        previous: dict[str | None, Sample] = {}
        try:
            while not self._stop.is_set():
                try:
                    pipe = client.pipeline(transaction=True)
                    pipe.time().execute_command("ROLE")
                    for _, lease_key, probe_key in self._read:
                        pipe.hgetall(lease_key).get(probe_key)
                    (secs, micros), role, *read = pipe.execute()
                except (redis.RedisError, OSError, ValueError):
                    previous = {}
                    time.sleep(0.01)
                    continue
                at = int(secs) * 1000 + int(micros) // 1000
                if role[0] != "master":  # a replica's copy is not what anyone is granted
                    previous = {}
                    if port == self.port:
                        self.latest = None
                        self.latest_by_lease = {}
                    time.sleep(self._every)
                    continue
                for (name, _, _), lease, value in zip(self._read, read[0::2], read[1::2],
                                                      strict=True):
                    before = previous.get(name)
                    sample = Sample(
                        at=at, prev_at=before.at if before else None,
                        holder_id=lease.get("holder_id"),
                        term=int(lease["term"]) if lease.get("term") else None,
                        renewed_at=int(lease["renewed_at"]) if lease.get("renewed_at") else None,
                        probe=value, instance_id=lease.get("instance_id"), server=port,
                        lease=name)
                    if before is None or (sample.holder_id, sample.term, sample.renewed_at,
                                          sample.probe, sample.instance_id) != (
                            before.holder_id, before.term, before.renewed_at, before.probe,
                            before.instance_id):
                        with self._lock:
                            self.samples.append(sample)
                    previous[name] = sample
                    if port == self.port:
                        if name is None or name == self._read[0][0]:
                            self.latest = sample
                        if name is not None:
                            self.latest_by_lease[name] = sample
                time.sleep(self._every)
        finally:
            client.close()

    def _read_histories(self) -> None:
        while not self._stop.wait(1.0):
            for port in self.ports:
                self._read_history(port)

    def _read_history(self, port: int) -> None:
        client = _client(port)
        try:
            entries = client.xrange(keys.history_key(NAMESPACE))
        except (redis.RedisError, OSError):
            return
        finally:
            client.close()
        with self._lock:
            for _, fields in entries:
                if "event" in fields:
                    self._history.setdefault(fields["event"], None)

    def _subscribe(self, port: int) -> None:
        channel = keys.events_channel(NAMESPACE)
        while not self._stop.is_set():
            client = _client(port)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                    if message is not None and message["type"] == "message":
                        with self._lock, contextlib.suppress(ValueError):
                            if message["data"] not in self._seen_channel:  # a replica relays
                                self._seen_channel.add(message["data"])
                                self.channel.append(json.loads(message["data"]))
            except (redis.RedisError, OSError):
                time.sleep(0.01)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
                client.close()

    # ---- reads at the end --------------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        """Every event any server's history stream held, in the order first seen."""
        for port in self.ports:
            self._read_history(port)
        out = []
        with self._lock:
            raw = list(self._history)
        for event in raw:
            with contextlib.suppress(ValueError):
                out.append(json.loads(event))
        return out

    def redis_lease(self) -> list[Any] | None:
        """[holder_id, term] of the lease in Redis now, or None if nobody holds it."""
        client = _client(self.port)
        try:
            lease = client.hgetall(self.lease_key)
        finally:
            client.close()
        return [lease["holder_id"], int(lease["term"])] if lease else None

    def leases_now(self) -> dict[str, list[Any] | None]:
        """Many leases: [holder_id, term] of every lease in Redis now (None: not held)."""
        client = _client(self.port)
        try:
            pipe = client.pipeline(transaction=True)
            for _, lease_key, _ in self._read:
                pipe.hgetall(lease_key)
            read = pipe.execute()
        finally:
            client.close()
        return {str(name): ([r["holder_id"], int(r["term"])] if r else None)
                for (name, _, _), r in zip(self._read, read, strict=True)}

    def watcher_picture(self) -> list[Any] | None:
        """[holder_id, term] as ``coordinator watch`` last described the lease."""
        picture: list[Any] | None = None
        for line in self._watch_out.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("type")
            if kind == "leader_changed":
                picture = [event["holder_id"], event["term"]]
            elif kind == "resync":
                picture = [event["holder_id"], event["term"]] if event.get("holder_id") else None
            elif (kind in ("lease_released", "lease_expired") and picture is not None
                  and event.get("term") == picture[1]):
                picture = None
        return picture
