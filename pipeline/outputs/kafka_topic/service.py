"""Sending messages to a topic and waiting until every one is acknowledged by all
in-sync replicas (``acks=all``, idempotent producer: a retried send is not doubled).

The forwarder calls ``send`` from a worker thread; the producer lives on a private event
loop that only this service runs, so it never touches the forwarder's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)

from pipeline.outputs.forwarding.retry import Refused, Unavailable

REFUSED = (MessageSizeTooLargeError, RecordTooLargeError, InvalidTopicError)
"""Errors no retry can cure: the record itself is at fault."""


class KafkaTopicService:
    def __init__(self, client_args: dict[str, Any], topic: str, timeout_s: float) -> None:
        self.client_args, self.topic, self.timeout_s = client_args, topic, timeout_s
        self.max_request_size = 1_048_576
        self._loop = asyncio.new_event_loop()
        self._producer: AIOKafkaProducer | None = None

    def send(self, batch: list[tuple[bytes, bytes]]) -> None:
        self._loop.run_until_complete(self._send(batch))

    async def _send(self, batch: list[tuple[bytes, bytes]]) -> None:
        try:
            producer = await self._started()
            futures = [await producer.send(self.topic, value=v, key=k) for k, v in batch]
            await asyncio.wait_for(asyncio.gather(*futures), self.timeout_s)
        except REFUSED as exc:
            raise Refused(f"{type(exc).__name__}: {exc}") from None
        except TopicAuthorizationFailedError as exc:
            # An ACL being fixed: waited for, like a 403 from a collector.
            raise Unavailable(f"not allowed to write {self.topic}: {exc}") from None
        except (KafkaError, TimeoutError) as exc:
            await self._reset()
            raise Unavailable(f"{type(exc).__name__}: {exc}") from None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **self.client_args,
                acks="all",
                enable_idempotence=True,
                max_request_size=self.max_request_size,
                request_timeout_ms=int(self.timeout_s * 1000),
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def _reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()

    def close(self) -> None:
        self._loop.run_until_complete(self._reset())
        self._loop.close()
