"""A cap on what one Kafka record batch may decompress to (``worker.max_batch_bytes``).

aiokafka decompresses a whole record batch before it yields its first record, with no
limit: 200 MB of zeros compress to 6 KB with zstd, so one batch within the broker's
``max.message.bytes`` can ask the worker for tens of gigabytes, and the worker would be
killed for its memory, restart, fetch the same batch and die again: the partition, and
every tenant on it, would halt. Whoever holds a producer credential for the events topic
can send one (the collector's own batches are honest, but its credential can be stolen).

``install`` replaces aiokafka's four decoders in its record parsers by capped ones,
which never produce more than the cap: gzip and lz4 stream with a bounded output
(zlib, python-lz4), zstd reads through ``zstandard``'s stream reader up to the cap, and
snappy's blocks declare their lengths, which are summed before anything is allocated. A
batch over the cap becomes, for each of its offsets, a record whose value is
``decode.UNREADABLE_BATCH`` and the reason; the decode stage dead-letters it
(``batch_too_large``), and the partition goes on. Batches within the cap decompress as
before.

This reaches into aiokafka's fetcher (``PartitionRecords``) and record modules, whose
version is pinned (constraints.txt); ``tests/worker/test_decompression.py`` sends real
bombs through a real consumer, so an upgrade that moves these names fails there.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import cramjam
import lz4.frame
import zstandard
from aiokafka.consumer import fetcher
from aiokafka.record import default_records as python_records

from pipeline.stages.decode import UNREADABLE_BATCH

log = logging.getLogger("auditpipe.worker")

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_installed: dict[str, int] = {}


class BatchTooLarge(Exception):
    """A record batch that would decompress to more than the cap."""


def capped_decoders(cap: int) -> dict[str, Callable[[Any], bytes]]:
    """aiokafka's decoder names -> decoders that raise BatchTooLarge past ``cap`` bytes."""

    def gzip_decode(payload: Any) -> bytes:
        out = bytearray()
        data = bytes(payload)
        while data:  # a gzip stream may hold several members
            member = zlib.decompressobj(47)  # a gzip or zlib header, found by itself
            out += member.decompress(data, cap + 1 - len(out))
            if len(out) > cap or member.unconsumed_tail:
                raise BatchTooLarge(f"gzip batch over {cap} bytes decompressed")
            if not member.eof:
                raise zlib.error("truncated gzip batch")
            data = member.unused_data
        return bytes(out)

    def lz4_decode(payload: Any) -> bytes:
        frame = lz4.frame.LZ4FrameDecompressor()
        out = frame.decompress(bytes(payload), max_length=cap + 1)
        if len(out) > cap or (not frame.eof and not frame.needs_input):
            raise BatchTooLarge(f"lz4 batch over {cap} bytes decompressed")
        return bytes(out)

    def zstd_decode(payload: Any) -> bytes:
        reader = zstandard.ZstdDecompressor().stream_reader(bytes(payload), read_across_frames=True)
        out = reader.read(cap + 1)
        if len(out) > cap:
            raise BatchTooLarge(f"zstd batch over {cap} bytes decompressed")
        return bytes(out)

    def snappy_decode(payload: Any) -> bytes:
        data = bytes(payload)
        blocks = list(_xerial_blocks(data)) if data.startswith(_XERIAL_MAGIC) else [data]
        declared = sum(cramjam.snappy.decompress_raw_len(block) for block in blocks)
        if declared > cap:
            raise BatchTooLarge(f"snappy batch of {declared} bytes, over {cap}")
        return b"".join(bytes(cramjam.snappy.decompress_raw(block)) for block in blocks)

    return {
        "gzip_decode": gzip_decode,
        "lz4_decode": lz4_decode,
        "zstd_decode": zstd_decode,
        "snappy_decode": snappy_decode,
    }


def _xerial_blocks(data: bytes) -> Iterator[bytes]:
    """The raw snappy blocks of a xerial stream (16-byte header, then size-prefixed)."""
    cursor = 16
    while cursor + 4 <= len(data):
        (size,) = struct.unpack_from("!i", data, cursor)
        cursor += 4
        if size < 0 or cursor + size > len(data):
            raise ValueError("corrupt xerial snappy stream")
        yield data[cursor : cursor + size]
        cursor += size


def install(cap: int) -> None:
    """Put the capped decoders into aiokafka's record parsers (C and Python), and let the
    fetcher turn a batch over the cap into marked records instead of an error."""
    modules: list[Any] = [python_records]
    try:
        from aiokafka.record._crecords import default_records as c_records

        modules.append(c_records)
    except ImportError:  # aiokafka without its C extension
        pass
    for module in modules:
        for name, decoder in capped_decoders(cap).items():
            if not hasattr(module, name):
                raise RuntimeError(f"aiokafka has no {module.__name__}.{name}: check the pin")
            setattr(module, name, decoder)
    if "cap" not in _installed:
        _wrap_partition_records()
    _installed["cap"] = cap


def _wrap_partition_records() -> None:
    original = fetcher.PartitionRecords.__init__

    def __init__(self: Any, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
        original(self, tp, _CappedRecords(records), *args, **kwargs)

    fetcher.PartitionRecords.__init__ = __init__


class _CappedRecords:
    """aiokafka's MemoryRecords, whose batches yield marked records past the cap."""

    def __init__(self, records: Any) -> None:
        self._records = records

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        return None if batch is None else _CappedBatch(batch)


class _CappedBatch:
    def __init__(self, batch: Any) -> None:
        self._batch = batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __iter__(self) -> Iterator[Any]:
        batch = self._batch
        try:
            records = list(batch)  # decompresses the batch (capped)
        except BatchTooLarge as exc:
            first, end = batch.base_offset, batch.next_offset
            log.error(
                "record batch at offsets %d..%d not decompressed: %s (each offset is "
                "dead-lettered as batch_too_large)",
                first,
                end - 1,
                exc,
            )
            reason = UNREADABLE_BATCH + str(exc).encode()
            yield from (_Marked(offset, batch, reason) for offset in range(first, end))
            return
        yield from records


class _Marked:
    """A record standing for one offset of a batch that was not decompressed."""

    def __init__(self, offset: int, batch: Any, value: bytes) -> None:
        self.offset = offset
        self.timestamp = batch.max_timestamp
        self.timestamp_type = batch.timestamp_type
        self.key = None
        self.value = value
        self.checksum = None
        self.headers: list[tuple[str, bytes]] = []
