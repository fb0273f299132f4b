"""docweave for Python: keep Loro documents in sync through a docweave server.

Edit documents with the ``loro`` package and hand their updates to a
``Replica`` as bytes; it syncs them over its own TCP connection (``docweave
serve --tcp HOST:PORT``) on the asyncio loop, keeps them in SQLite when
given a path, and gives back snapshots to import into your ``LoroDoc``::

    import asyncio, loro, docweave

    async def main():
        replica = docweave.Replica("laptop", sqlite="laptop.db")
        await replica.open("notes")
        doc = loro.LoroDoc()
        doc.get_text("text").insert(0, "hello")
        replica.apply("notes", doc.export(loro.ExportMode.Snapshot()))
        await replica.connect("127.0.0.1", 7880)
        await replica.wait_acknowledged("notes")
        await replica.close()

    asyncio.run(main())

A backend that only reads and writes documents, without keeping a replica,
uses ``docweave.http`` (the server's document API, and the check of a
webhook's signature; standard library only).
"""

from __future__ import annotations

import asyncio
import json
import time

from ._native import Node

__all__ = ["Node", "Replica"]

_HEADER = 6


def _now() -> int:
    return int(time.monotonic() * 1000)


class Replica:
    """A docweave node driven by asyncio: one server connection, documents
    edited with Loro, changes passed in and out as bytes."""

    def __init__(self, peer: str, sqlite: str | None = None, token: str | None = None):
        self._node = Node(peer, _now(), sqlite=sqlite, token=token)
        self._peer = peer
        self._address = None
        self._ssl = None
        self._writer = None
        self._channel = None
        self._task = None
        self._wake = asyncio.Event()
        self._ready = set()
        self._acknowledged = {}
        self._changes = {}
        self._errors = []
        self._changed = asyncio.Condition()
        self._closed = False
        self._dials = []

    async def open(self, doc: str) -> None:
        """Opens (loads or creates) a document; returns once it is ready."""
        self._node.open(doc, _now())
        await self._until(lambda: doc in self._ready)

    def apply(self, doc: str, update: bytes) -> None:
        """Applies a Loro update (or snapshot) made with your own Loro."""
        self._node.apply_update(doc, bytes(update), _now())
        # Stored now (the store runs inside), sent by the loop when connected.
        self._drain()
        self._kick()

    def export(self, doc: str) -> bytes:
        """The document as a Loro snapshot (``LoroDoc.import_`` takes it)."""
        return self._node.export(doc)

    def changes(self, doc: str) -> int:
        """How many times changes from elsewhere arrived for ``doc``."""
        return self._changes.get(doc, 0)

    def errors(self) -> list:
        """What went wrong so far, oldest first, as ``(doc or None, reason)``:
        data that did not import, a store that failed. Syncing goes on, but
        for a failure inside docweave itself (a bug), after which the node
        does nothing more: make another."""
        return list(self._errors)

    async def connect(self, host: str, port: int, ssl=None) -> None:
        """Connects to ``docweave serve --tcp`` and keeps syncing in the background.

        ``ssl``: an ``ssl.SSLContext`` (``ssl.create_default_context(cafile=...)``
        for a private CA) when the server speaks TLS (``serve --tls-cert``);
        the server's certificate must name ``host``. Tokens must not cross
        networks in clear text."""
        self._address = (host, port)
        self._ssl = ssl
        self._node.connect("server", _now())
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._kick()

    def set_token(self, token: str) -> None:
        """A new token for the server (a refresh before the old one expires):
        presented at once on a live connection, and in every hello after."""
        self._node.set_token("server", token, _now())
        self._kick()

    async def wait_acknowledged(self, doc: str, timeout: float = 20) -> None:
        """Waits until the server acknowledged (durably) what we changed."""
        await self._until(lambda: self._acknowledged.get(doc, 0) > 0, timeout)

    async def wait_for(self, predicate, timeout: float = 20) -> None:
        """Waits until ``predicate()`` holds, checking after every change."""
        await self._until(predicate, timeout)

    async def close(self) -> None:
        """Stops syncing and closes the connection (the store keeps everything)."""
        self._closed = True
        self._kick()
        if self._task is not None:
            await self._task
        self._drain()
        if self._writer is not None:
            self._writer.close()

    def _kick(self) -> None:
        self._wake.set()

    async def _until(self, predicate, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self._drain()
            if predicate():
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("docweave: timed out")
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.05))
                except asyncio.TimeoutError:
                    pass

    def _drain(self) -> None:
        """Carries out what the node wants done now (dials wait for the loop)."""
        while True:
            out = self._node.poll(_now())
            if out is None:
                return
            kind, channel, data = out
            if kind == "transmit" and self._writer is not None and channel == self._channel:
                self._writer.write(data)
            elif kind == "dial":
                self._dials.append(data)
            elif kind == "close" and channel == self._channel and self._writer is not None:
                self._writer.close()
            elif kind == "event":
                self._event(json.loads(data))

    def _event(self, event: dict) -> None:
        (name, body), = event.items()
        if name == "DocReady":
            self._ready.add(body["doc"])
        elif name == "AckedByRemote":
            self._acknowledged[body["doc"]] = self._acknowledged.get(body["doc"], 0) + 1
        elif name == "Error":
            self._errors.append((body.get("doc"), body.get("reason")))
        elif name == "DocChanged" and body.get("from") not in (None, self._peer):
            self._changes[body["doc"]] = self._changes.get(body["doc"], 0) + 1

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _run(self) -> None:
        reader = None
        buffer = b""
        while not self._closed:
            self._drain()
            dials, self._dials = self._dials, []
            for remote in dials:
                try:
                    reader, self._writer = await asyncio.open_connection(
                        *self._address, ssl=self._ssl)
                    self._channel = self._node.channel_opened(remote, _now())
                except OSError:
                    reader = None
                    # The node retries with its own backoff.
                    self._node.dial_failed(remote, _now())
            self._drain()
            await self._notify()
            due = self._node.next_timeout()
            wait = 0.2 if due is None else max(0.0, min(0.2, (due - _now()) / 1000))
            self._wake.clear()
            reading = asyncio.ensure_future(reader.read(1 << 16)) if reader is not None else None
            waiting = [asyncio.ensure_future(self._wake.wait())]
            if reading is not None:
                waiting.append(reading)
            done, pending = await asyncio.wait(waiting, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()
            if reading is not None and reading in done:
                data = reading.result()
                if not data:
                    self._node.channel_closed(self._channel, _now())
                    reader, self._writer, buffer = None, None, b""
                    continue
                buffer += data
                while len(buffer) >= _HEADER:
                    whole = _HEADER + int.from_bytes(buffer[2:6], "little")
                    if len(buffer) < whole:
                        break
                    self._node.feed(self._channel, buffer[:whole], _now())
                    buffer = buffer[whole:]
                    # What the frame's first messages sent (the requests for
                    # more) leaves before the next frame is taken, so the
                    # other side works while this one imports.
                    self._drain()
            self._node.timeout(_now())
        self._drain()
        await self._notify()
