"""The Kafka side of the HL7 v2 and FHIR servers: a message is acknowledged only once Kafka holds it.

The servers in ``sources`` (``sources.hl7.server.MLLPServer``, ``sources.fhir.server.make_app``)
map each message and call an injected async ``publish(events, raw)`` before they answer;
if it raises, the MLLP server answers ``AR`` and the FHIR server 503, so the sender keeps
the message and retries. :class:`SourcePublisher` is that function over Kafka: every
contract event as JSON to its family's topic, keyed by ``appointment_id`` (a correction,
``event.withdrawn``, to the family of the type it withdraws: ``schemas.eventfile.route``),
and the message as received to a raw topic (``JOURNEYS_TOPIC_RAW_HL7`` /
``JOURNEYS_TOPIC_RAW_FHIR``) for audit and replay; it returns only when the broker has
acknowledged every one of them.

Why not ``streams.produce.EventProducer``: that one is synchronous on a private event
loop, lingers to fill batches, and keeps its first error for good: right for a file, wrong
for a server that answers each message as soon as it is safe and must recover when the
broker comes back. What they share: ``acks=all``, no idempotence (the local tansu broker
refuses idempotent producers; the pipeline dedupes on ``(source, event_id)``, so a retried
duplicate is harmless) and aiokafka's default partitioner, murmur2 of the key, so an
appointment lands on the same partition number as from ``journeys produce``.

:func:`serve` runs a gateway (``hl7`` or ``fhir``) until an event is set; ``journeys hl7
listen`` and ``journeys fhir serve`` run it until SIGINT/SIGTERM (:func:`run_gateway`),
``journeys demo --source hl7`` in a thread (:class:`GatewayThread`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Literal

import orjson

from runtime.config import Settings
from runtime.logs import get_logger
from schemas.decode import Rejected
from schemas.eventfile import route
from schemas.events import Family
from sources.base import EventDict, Source
from streams.produce import quiet_kafka_clients
from streams.topics import BrokerError, ensure_topics, topic_partitions

log = get_logger(__name__)

Kind = Literal["hl7", "fhir"]
Address = tuple[str, int]
CONTENT_TYPES: dict[Kind, bytes] = {"hl7": b"x-application/hl7-v2+er7", "fhir": b"application/fhir+json"}


class GatewayError(RuntimeError):
    """A fault that stops a gateway from starting (broker unreachable, topics missing, port taken)."""


class PublishError(RuntimeError):
    """The broker did not acknowledge every message of one source message: the sender must retry."""


class SourcePublisher:
    """``publish(events, raw)`` for the source servers, over one aiokafka producer.

    >>> async def example(bootstrap):  # doctest: +SKIP
    ...     async with SourcePublisher(bootstrap, DEFAULT_TOPICS, "journey.raw.hl7", "hl7", "hl7") as publisher:
    ...         await publisher.publish(events, raw)   # returns once all are acknowledged
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Mapping[Family, str],
        raw_topic: str,
        source_name: str,
        kind: Kind,
        timeout_s: float = 10.0,
        **producer_config: Any,
    ) -> None:
        self.bootstrap, self.topics, self.raw_topic = bootstrap, dict(topics), raw_topic
        self.messages = self.events = 0
        self._raw_headers = [("source", source_name.encode()), ("content-type", CONTENT_TYPES[kind])]
        self._config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": f"journeys-{kind}-gateway",
            "acks": "all",
            "enable_idempotence": False,
            "request_timeout_ms": int(timeout_s * 1000),
            **producer_config,
        }
        self._producer: Any = None

    async def start(self) -> None:
        """Connect; :class:`GatewayError` if the broker cannot be reached."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(**self._config)
        try:
            await producer.start()
        except KafkaError as error:
            await producer.stop()
            raise GatewayError(f"cannot reach Kafka at {self.bootstrap} ({type(error).__name__})") from None
        self._producer = producer

    async def stop(self) -> None:
        """Flush and disconnect (every publish has already awaited its acknowledgements)."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> SourcePublisher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _messages(self, events: Sequence[EventDict], raw: bytes) -> list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]:
        messages: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []
        for event in events:
            value = orjson.dumps(event)
            verdict = route(value)
            if isinstance(verdict, Rejected):  # a source's bug (the built-in ones emit checked events only)
                raise PublishError(f"an event the source mapped has no topic: {verdict.reason}: {verdict.detail}")
            messages.append((self.topics[verdict.family], verdict.key, value, []))
        # Keyed like its first event: a replay of the raw topic meets an appointment's messages in order.
        key = messages[0][1] if messages else None
        messages.append((self.raw_topic, key, raw, [*self._raw_headers, ("events", str(len(events)).encode())]))
        return messages

    async def publish(self, events: list[EventDict], raw: bytes) -> None:
        """Send ``events`` and ``raw``; return once the broker acknowledged all, else raise :class:`PublishError`."""
        from aiokafka.errors import KafkaError

        if self._producer is None:
            raise PublishError("the publisher is not started")
        deliveries: list[asyncio.Future[Any]] = []
        failure: BaseException | None = None
        for topic, key, value, headers in self._messages(events, raw):
            try:
                deliveries.append(await self._producer.send(topic, value, key=key, headers=headers))
            except KafkaError as error:  # no metadata for the topic within the timeout, producer closing
                failure = error
                break
        # Every queued send is awaited, even after a failure: none is left unobserved.
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        failure = failure or next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failure is not None:
            log.warning("publish_failed", bootstrap=self.bootstrap, events=len(events), error=repr(failure))
            raise PublishError(f"Kafka at {self.bootstrap} did not acknowledge: {failure!r}")
        self.messages += 1
        self.events += len(events)


def raw_topic_of(settings: Settings, kind: Kind) -> str:
    return settings.topic_raw_hl7 if kind == "hl7" else settings.topic_raw_fhir


def check_topics(settings: Settings, raw_topic: str) -> None:
    """The input topics must exist (a broker that auto-creates them would pick its own partition
    count and break co-partitioning by ``appointment_id``); the raw topic is created if missing."""
    try:
        found = topic_partitions(settings.bootstrap, (*settings.input_topics, raw_topic))
        missing = [topic for topic in settings.input_topics if topic not in found]
        if missing:
            raise GatewayError(f"missing topics on {settings.bootstrap}: {', '.join(missing)} "
                               "(start the pipeline first, e.g. `journeys up`, or declare them)")
        if raw_topic not in found:
            ensure_topics(settings.bootstrap, [raw_topic], settings.partitions, settings.replication_factor)
    except BrokerError as error:
        raise GatewayError(str(error)) from None


def _cannot_listen(host: str, port: int, error: OSError) -> GatewayError:
    reason = os.strerror(error.errno) if error.errno else str(error)
    return GatewayError(f"cannot listen on {host}:{port}: {reason}")


@asynccontextmanager
async def _listening(kind: Kind, source: Source, publisher: SourcePublisher, host: str, port: int) -> AsyncIterator[Address]:
    """The MLLP or HTTP server bound to ``host:port``; yields the address actually bound."""
    if kind == "hl7":
        from sources.hl7.server import MLLPServer

        server = MLLPServer(source, publisher.publish, host, port)
        try:
            await server.start()
        except OSError as error:
            raise _cannot_listen(host, port, error) from None
        try:
            yield server.address
        finally:
            await server.close()
        return
    from aiohttp import web

    from sources.fhir.server import make_app

    # shutdown_timeout: a request in hand gets its answer, and Ctrl-C still stops within seconds.
    runner = web.AppRunner(make_app(source, publisher.publish), access_log=None, shutdown_timeout=3.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            raise _cannot_listen(host, port, error) from None
        bound = runner.addresses[0]
        yield bound[0], bound[1]
    finally:
        await runner.cleanup()


async def serve(
    kind: Kind,
    settings: Settings,
    source: Source,
    host: str,
    port: int,
    stop: asyncio.Event,
    ready: Callable[[Address], None] = lambda address: None,
) -> None:
    """Run the ``kind`` gateway for ``source`` until ``stop`` is set; ``port=0`` takes a free port.

    Kafka first, then the socket: a message is never accepted before it could be published.
    """
    quiet_kafka_clients()
    raw_topic = raw_topic_of(settings, kind)
    publisher = SourcePublisher(settings.bootstrap, settings.topics, raw_topic, source.name, kind,
                                settings.gateway_timeout_s)
    async with publisher:
        await asyncio.to_thread(check_topics, settings, raw_topic)
        async with _listening(kind, source, publisher, host, port) as address:
            log.info("gateway_listening", kind=kind, host=address[0], port=address[1], source=source.name,
                     bootstrap=settings.bootstrap, raw_topic=raw_topic)
            ready(address)
            await stop.wait()
    log.info("gateway_stopped", kind=kind, messages=publisher.messages, events=publisher.events)


def run_gateway(kind: Kind, settings: Settings, source: Source, host: str, port: int) -> None:
    """:func:`serve` until SIGINT or SIGTERM (the commands)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(kind, settings, source, host, port, stop)

    asyncio.run(main())


class GatewayThread:
    """:func:`serve` on its own event loop in a thread, for a process that also feeds it.

    >>> with GatewayThread("hl7", settings, load_source("hl7")) as gateway:  # doctest: +SKIP
    ...     host, port = gateway.address
    """

    def __init__(self, kind: Kind, settings: Settings, source: Source, host: str = "127.0.0.1", port: int = 0,
                 start_timeout_s: float = 60.0) -> None:
        self.kind, self.settings, self.source, self.host, self.port = kind, settings, source, host, port
        self.address: Address = (host, port)
        self._start_timeout_s = start_timeout_s
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{kind}-gateway", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            await serve(self.kind, self.settings, self.source, self.host, self.port, self._stop, self._bound)

        try:
            self._loop.run_until_complete(main())
        except BaseException as error:  # noqa: BLE001 - raised in the caller's thread by start()
            self._error = error
        finally:
            self._ready.set()
            self._loop.close()

    def _bound(self, address: Address) -> None:
        self.address = address
        self._ready.set()

    def start(self) -> GatewayThread:
        """Return once the gateway listens; raise what stopped it from starting."""
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s):
            raise GatewayError(f"the {self.kind} gateway did not start within {self._start_timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            if self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
