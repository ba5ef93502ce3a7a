"""The recorder: what the harness sees of the cluster, straight from Redis (never via a proxy).

- a subscriber on the events channel (it reconnects after a Redis restart; the history
  stream read at the end fills in what was published while it was away);
- a poller reading the lease and the probe record in one MULTI every 20 ms, stamped by
  Redis's TIME, keeping each change with the time of the read before it;
- ``coordinator watch --json`` as a user would run it, whose final picture is compared
  with Redis's lease at the end.
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

from coordinator import keys
from tests.chaos.recording import Sample
from tests.processes import coordinator_env

POLL_EVERY = 0.02
NAMESPACE, LEASE = "coordinator", "global"


def _client(port: int) -> Any:
    return redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.3,
                       retry=Retry(NoBackoff(), 0), decode_responses=True)


class Recorder:
    """Records the channel, the lease and the probe record until stopped."""

    def __init__(self, port: int, workdir: Path, probe_name: str) -> None:
        self.port = port
        self.workdir = workdir
        self.probe_key = keys.fenced_key(NAMESPACE, probe_name)
        self.lease_key = keys.lease_key(NAMESPACE, LEASE)
        self.samples: list[Sample] = []
        self.channel: list[dict[str, Any]] = []
        self.latest: Sample | None = None  # the last read, changed or not
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, name="chaos-poller", daemon=True),
                         threading.Thread(target=self._subscribe, name="chaos-subscriber",
                                          daemon=True)]
        self._watch_out = workdir / "watch.jsonl"
        self._watcher: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for t in self._threads:
            t.start()
        with self._watch_out.open("wb") as out:
            self._watcher = subprocess.Popen(
                [sys.executable, "-m", "coordinator", "watch", "--json"],
                env=coordinator_env(f"redis://127.0.0.1:{self.port}/0"),
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

    def _poll(self) -> None:
        client = _client(self.port)
        previous: Sample | None = None
        try:
            while not self._stop.is_set():
                try:
                    pipe = client.pipeline(transaction=True)
                    pipe.time().hgetall(self.lease_key).get(self.probe_key)
                    (secs, micros), lease, value = pipe.execute()
                except (redis.RedisError, OSError, ValueError):
                    time.sleep(0.01)
                    continue
                at = int(secs) * 1000 + int(micros) // 1000
                sample = Sample(
                    at=at, prev_at=previous.at if previous else None,
                    holder_id=lease.get("holder_id"),
                    term=int(lease["term"]) if lease.get("term") else None,
                    renewed_at=int(lease["renewed_at"]) if lease.get("renewed_at") else None,
                    probe=value)
                if previous is None or (sample.holder_id, sample.term, sample.renewed_at,
                                        sample.probe) != (previous.holder_id, previous.term,
                                                          previous.renewed_at, previous.probe):
                    self.samples.append(sample)
                previous = self.latest = sample
                time.sleep(POLL_EVERY)
        finally:
            client.close()

    def _subscribe(self) -> None:
        channel = keys.events_channel(NAMESPACE)
        while not self._stop.is_set():
            client = _client(self.port)
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                    if message is not None and message["type"] == "message":
                        with contextlib.suppress(ValueError):
                            self.channel.append(json.loads(message["data"]))
            except (redis.RedisError, OSError):
                time.sleep(0.01)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
                client.close()

    # ---- reads at the end --------------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        """Every event in the history stream, oldest first."""
        client = _client(self.port)
        try:
            out = []
            for _, fields in client.xrange(keys.history_key(NAMESPACE)):
                with contextlib.suppress(ValueError, KeyError):
                    out.append(json.loads(fields["event"]))
            return out
        finally:
            client.close()

    def redis_lease(self) -> list[Any] | None:
        """[holder_id, term] of the lease in Redis now, or None if nobody holds it."""
        client = _client(self.port)
        try:
            lease = client.hgetall(self.lease_key)
        finally:
            client.close()
        return [lease["holder_id"], int(lease["term"])] if lease else None

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
            elif kind == "lease_released" and picture is not None and event.get("term") == picture[1]:
                picture = None
        return picture
