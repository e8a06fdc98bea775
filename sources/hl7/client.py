"""A blocking MLLP sender, the other end of ``sources.hl7.server``: for tests, the demo and feed checks.

Original-mode acknowledgement, one message at a time: :meth:`MLLPClient.send` returns only
with the ACK, so a caller knows which messages the receiver took (``AA``) before sending on.

>>> import asyncio, threading
>>> from sources.hl7 import HL7Source
>>> from sources.hl7.server import MLLPServer
>>> async def publish(events, raw):
...     pass
>>> def serve(ready, done):
...     async def run():
...         async with MLLPServer(HL7Source(), publish, port=0) as server:
...             ready.append(server.address)
...             while not done.is_set():
...                 await asyncio.sleep(0.01)
...     asyncio.run(run())
>>> ready, done = [], threading.Event()
>>> thread = threading.Thread(target=serve, args=(ready, done)); thread.start()
>>> while not ready: done.wait(0.01)
False
>>> with MLLPClient(*ready[0]) as client:
...     client.send(b"MSH|^~\\\\&|A|B|C|D|20260302||ADT^A31|9|P|2.5\\r").code
'AE'
>>> done.set(); thread.join()
"""

from __future__ import annotations

import socket
from types import TracebackType

from sources.hl7.ack import Ack, parse_ack
from sources.hl7.mllp import frame, split_frames


class MLLPClient:
    """One TCP connection to an MLLP receiver; ``timeout`` bounds the wait for each ACK."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def send(self, message: bytes) -> Ack:
        """Send one message (unframed) and return its ACK; :class:`ConnectionError` if the receiver hung up."""
        self._socket.sendall(frame(message))
        while True:
            acks, self._buffer = split_frames(self._buffer)
            if acks:
                return parse_ack(acks[0])
            chunk = self._socket.recv(65536)
            if not chunk:
                raise ConnectionError("the MLLP receiver closed the connection before acknowledging")
            self._buffer += chunk

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> MLLPClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
