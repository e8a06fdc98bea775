"""An asyncio MLLP server: map each message, publish its events, then acknowledge.

``AA`` only after ``publish`` returned (and only then is the source's state committed);
``AE`` with the rejection in MSA-3 and ERR when the message does not map; ``AR`` when
``publish`` raised (the sender retries; nothing was remembered). Messages are handled one
at a time across connections, so the source's state sees them in a single order.

>>> import asyncio
>>> from sources.hl7 import HL7Source
>>> from sources.hl7.mllp import frame
>>> async def demo():
...     published = []
...     async def publish(events, raw):
...         published.append(events)
...     async with MLLPServer(HL7Source(), publish, port=0) as server:
...         reader, writer = await asyncio.open_connection(*server.address)
...         writer.write(frame(b"MSH|^~\\\\&|A|B|C|D|20260302||ADT^A31|9|P|2.5\\r"))
...         ack = await read_frame(reader)
...         writer.close()
...     return ack.split(b"\\r")[1].split(b"|")[:3], published
>>> asyncio.run(demo())
([b'MSA', b'AE', b'9'], [])
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from sources.base import Rejection, Source
from sources.hl7.ack import build_ack
from sources.hl7.mllp import END, START, frame

Publish = Callable[[list[dict[str, Any]], bytes], Awaitable[None]]


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = 1 << 20) -> bytes:
    """The next MLLP message from ``reader`` (bytes before the start byte are skipped)."""
    await reader.readuntil(START)
    data = await reader.readuntil(END)
    if len(data) > max_bytes:
        raise ValueError("MLLP message too large")
    return data[: -len(END)]


class MLLPServer:
    """Listens on ``host:port`` (``port=0``: any free port, see :attr:`address`)."""

    def __init__(
        self, source: Source, publish: Publish, host: str = "127.0.0.1", port: int = 2575,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self.source, self.publish = source, publish
        self.host, self.port, self.max_message_bytes = host, port, max_message_bytes
        self._server: asyncio.Server | None = None
        self._lock = asyncio.Lock()
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=self.max_message_bytes + 16)

    async def close(self) -> None:
        """Stop accepting, let the message in hand finish (its ACK goes out), then hang up.

        Waiting for the message in hand matters: cut off between publish and ACK, the sender
        would resend a message that is already in Kafka (harmless, deduplicated, but noise).
        """
        if self._server is not None:
            self._server.close()
            async with self._lock:
                for task in list(self._connections):
                    task.cancel()
            await self._server.wait_closed()

    async def __aenter__(self) -> MLLPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | Any) -> None:
        await self.close()

    async def handle(self, raw: bytes) -> bytes:
        """The ACK for one message (mapping, publishing and committing as described above)."""
        async with self._lock:
            prepared = self.source.try_prepare(raw)
            if isinstance(prepared, Rejection):
                return build_ack(raw, "AE", prepared.reason, prepared.path, prepared.detail)
            try:
                await self.publish(prepared.events, raw)
            except Exception as error:  # the publisher's failure, whatever it is (the publisher logs it)
                return build_ack(raw, "AR", "publish_failed", "MSH", str(error) or type(error).__name__)
            prepared.commit()
            return build_ack(raw, "AA")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    raw = await read_frame(reader, self.max_message_bytes)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
                    break
                writer.write(frame(await self.handle(raw)))
                await writer.drain()
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()
