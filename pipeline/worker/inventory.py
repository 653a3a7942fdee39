"""The sandbox inventory: ``auditpipe inventory put|load`` and the worker's view of it.

Records (schema ``sandbox``) go to the compacted topic ``audit.sandboxes`` keyed by
tenant and sandbox_id (``record_key``), so the topic keeps the latest record of each
sandbox of each tenant: two tenants may name their sandboxes alike. ``load`` takes JSON
lines with the record's fields::

    {"sandbox_id": "sb-1", "tenant": "acme", "owner": "ana", "environment": "prod-replica",
     "image": "python:3.11", "labels": {"team": "ml"}, "created_at": "2026-11-28T10:00:00Z"}
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.config import Settings
from pipeline.kafka_clients import client_args
from pipeline.schema.codec import AvroCodec, DecodeError
from pipeline.schema.event import InvalidEvent, parse_ts
from pipeline.stages.enrich import SandboxInfo

SANDBOX_SCHEMA = "sandbox"
_FIELDS = frozenset(
    ("sandbox_id", "tenant", "owner", "environment", "image", "labels", "created_at")
)


def parse_record(obj: Any) -> dict[str, Any]:
    """Validate one inventory record (raises InvalidEvent naming the field)."""
    if not isinstance(obj, dict):
        raise InvalidEvent("record", "expected a JSON object")
    unknown = obj.keys() - _FIELDS
    if unknown:
        raise InvalidEvent(sorted(unknown)[0], "unknown field")
    for name in ("sandbox_id", "tenant"):
        if not isinstance(obj.get(name), str) or not obj[name]:
            raise InvalidEvent(name, "required")
    for name in ("owner", "environment", "image"):
        if not isinstance(obj.get(name, ""), str):
            raise InvalidEvent(name, "expected a string")
    labels = obj.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidEvent("labels", "expected an object of strings")
    created = obj.get("created_at")
    return {
        "sandbox_id": obj["sandbox_id"],
        "tenant": obj["tenant"],
        "owner": obj.get("owner", ""),
        "environment": obj.get("environment", ""),
        "image": obj.get("image", ""),
        "labels": labels,
        "created_at": parse_ts(created) if created is not None else time.time_ns() // 10**6,
    }


KEY_SEPARATOR = b"\x1f"


def record_key(tenant: str, sandbox_id: str) -> bytes:
    """The inventory topic's key of a sandbox: its tenant and id."""
    return tenant.encode() + KEY_SEPARATOR + sandbox_id.encode()


async def put_records(
    settings: Settings, codec: AvroCodec, records: Iterable[dict[str, Any]]
) -> int:
    producer = AIOKafkaProducer(
        **client_args(settings.kafka),
        acks="all",
        enable_idempotence=True,
        client_id="inventory",
    )
    await producer.start()
    sent = 0
    try:
        for record in records:
            await producer.send_and_wait(
                settings.kafka.topic_sandboxes,
                codec.encode(SANDBOX_SCHEMA, record),
                key=record_key(record["tenant"], record["sandbox_id"]),
            )
            sent += 1
    finally:
        await producer.stop()
    return sent


def read_records(lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], list[str]]:
    """Valid records and the errors (with line numbers) of a JSON-lines file."""
    records, errors = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(parse_record(orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            errors.append(f"line {number}: invalid JSON: {exc}")
        except InvalidEvent as exc:
            errors.append(f"line {number}: {exc}")
    return records, errors


class InventoryFollower:
    """The inventory topic, read in full and then followed: every worker holds every sandbox.

    The stream-table join's table side, with a global table's semantics: all partitions of
    the compacted topic, no consumer group, latest record per sandbox (a null value
    deletes). ``ready`` is set once what the topic held at start has been read, so that a
    starting worker does not mark known sandboxes unknown.
    """

    def __init__(self, settings: Settings, codec: AvroCodec) -> None:
        self.settings = settings
        self.codec = codec
        self.sandboxes: dict[tuple[str, str], SandboxInfo] = {}
        """(tenant, sandbox_id) -> the sandbox's latest record."""
        self._named: dict[bytes, tuple[str, str]] = {}
        """Topic key -> the sandbox its latest record named (what a tombstone deletes;
        records written before keys named the tenant have the sandbox_id alone as key)."""
        self.ready = asyncio.Event()
        self.unreadable = 0

    def get(self, tenant: str, sandbox_id: str) -> SandboxInfo | None:
        return self.sandboxes.get((tenant, sandbox_id))

    async def run(self) -> None:
        topic = self.settings.kafka.topic_sandboxes
        consumer = AIOKafkaConsumer(
            **client_args(self.settings.kafka),
            enable_auto_commit=False,
            client_id="inventory-follower",
        )
        await consumer.start()
        try:
            partitions = await consumer._client._wait_on_metadata(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            behind = {tp for tp in tps if ends[tp] > 0}
            if not behind:
                self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    for record in records:
                        self._apply(record.key, record.value)
                        if record.offset + 1 >= ends[tp]:
                            behind.discard(tp)
                for tp in list(behind):  # e.g. the end was a compacted-away record
                    if await consumer.position(tp) >= ends[tp]:
                        behind.discard(tp)
                if not behind:
                    self.ready.set()
        finally:
            await consumer.stop()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        previous = self._named.pop(key, None)
        if previous is not None:
            self.sandboxes.pop(previous, None)
        if value is None:
            return
        decoded = _decode(self.codec, value)
        if decoded is None:
            self.unreadable += 1
            return
        sandbox, info = decoded
        self.sandboxes[sandbox] = info
        self._named[key] = sandbox


def _decode(codec: AvroCodec, raw: bytes) -> tuple[tuple[str, str], SandboxInfo] | None:
    """The (tenant, sandbox_id) a record names, and its information."""
    try:
        record = codec.decode(raw).record
    except DecodeError:
        return None  # an unreadable inventory record: the sandbox counts as unknown
    return (record["tenant"], record["sandbox_id"]), SandboxInfo(
        record["tenant"],
        record["owner"],
        record["environment"],
        record["image"],
        dict(record["labels"]),
        record["created_at"],
    )
