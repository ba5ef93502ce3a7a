"""A TCP proxy between one daemon and Redis that can delay, blackhole, cut and heal its link.

The proxies run on an asyncio loop in a thread of their own (``ProxyHost``), so the harness
can block (wait for processes, restart Redis) without stalling anyone's traffic.

- ``delay(s)``: every chunk is forwarded ``s`` seconds after it arrived, in order, both ways.
- ``blackhole()``: connections are accepted but nothing is forwarded either way (a
  partition: bytes wait, as TCP retransmissions would).
- ``heal(cut=False)``: forwarding resumes and the held bytes are delivered late (a healed
  partition); with ``cut=True`` the held connections are closed instead (a peer gave up).
- ``cut()``: every open connection is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_EOF = b""


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class Proxy:
    """One listening port forwarding to ``upstream_port`` on 127.0.0.1."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.delay_s = 0.0
        self._open = asyncio.Event()
        self._open.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def blackholed(self) -> bool:
        """Whether forwarding is stopped."""
        return not self._open.is_set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        self._open.set()

    def delay(self, seconds: float) -> None:
        self.delay_s = seconds

    def blackhole(self) -> None:
        self._open.clear()

    def heal(self, *, cut: bool = False) -> None:
        if cut:
            self.cut()
        self.delay_s = 0.0
        self._open.set()

    def cut(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._open.wait()  # a blackholed proxy accepts but does not connect onward
            if link not in self._links:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                return  # Redis is down: the client sees its connection closed
            link.upstream = up_writer
            if link not in self._links:
                return
            link.tasks = [asyncio.ensure_future(self._pump(reader, up_writer)),
                          asyncio.ensure_future(self._pump(up_reader, writer))]
            await asyncio.wait(link.tasks, return_when=asyncio.ALL_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            self._links.discard(link)
            link.abort()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Read chunks as they come; forward each after the delay, in order, when open."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    queue.put_nowait((time.monotonic() + self.delay_s, data))
            queue.put_nowait((time.monotonic() + self.delay_s, _EOF))

        reading = asyncio.ensure_future(read())
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._open.wait()
                if data is _EOF or not data:
                    with contextlib.suppress(OSError):
                        dst.write_eof()
                    return
                dst.write(data)
                await dst.drain()
        except OSError:
            return
        finally:
            reading.cancel()


class ProxyHost:
    """A thread running an asyncio loop that hosts the proxies; its methods are thread-safe."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxies",
                                        daemon=True)
        self._thread.start()
        self.proxies: dict[str, Proxy] = {}

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _do(self, fn: Any, *args: Any, **kw: Any) -> None:
        async def run() -> None:
            fn(*args, **kw)
        self._call(run())

    def add(self, name: str, upstream_port: int) -> Proxy:
        """A new proxy to ``upstream_port``, known as ``name``; returns it once listening."""
        proxy = Proxy(upstream_port)
        self._call(proxy.start())
        self.proxies[name] = proxy
        return proxy

    def delay(self, name: str, seconds: float) -> None:
        self._do(self.proxies[name].delay, seconds)

    def blackhole(self, name: str) -> None:
        self._do(self.proxies[name].blackhole)

    def heal(self, name: str, *, cut: bool = False) -> None:
        self._do(self.proxies[name].heal, cut=cut)

    def cut(self, name: str) -> None:
        self._do(self.proxies[name].cut)

    def close(self) -> None:
        """Close every proxy and stop the loop and its thread."""
        async def close_all() -> None:
            for proxy in self.proxies.values():
                await proxy.close()
        with contextlib.suppress(Exception):
            self._call(close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
