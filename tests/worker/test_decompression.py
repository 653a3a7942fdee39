"""The cap on a Kafka record batch's decompressed size: every codec aiokafka reads gives
an honest batch back whole and refuses a bomb without building it."""

from __future__ import annotations

import gzip
import tracemalloc

import cramjam
import lz4.frame
import pytest
import zstandard

from pipeline.worker.decompression import BatchTooLarge, capped_decoders

CAP = 8 << 20
HONEST = b"".join(b"event %d of a batch; " % n for n in range(100_000))  # 2.2 MB
BOMB = bytes(200 << 20)  # 200 MB of zeros


def xerial(data: bytes) -> bytes:
    """snappy in the xerial framing aiokafka's producer uses: header, size-prefixed blocks."""
    header = b"\x82SNAPPY\x00" + (1).to_bytes(4, "big") + (1).to_bytes(4, "big")
    blocks = b""
    for start in range(0, len(data), 1 << 20):
        block = bytes(cramjam.snappy.compress_raw(data[start : start + (1 << 20)]))
        blocks += len(block).to_bytes(4, "big") + block
    return header + blocks


COMPRESS = {
    "gzip_decode": lambda data: gzip.compress(data, 6),
    "lz4_decode": lz4.frame.compress,
    "zstd_decode": lambda data: zstandard.ZstdCompressor(level=3).compress(data),
    "snappy_decode": xerial,
}


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_an_honest_batch_decompresses_whole(codec: str) -> None:
    decode = capped_decoders(CAP)[codec]
    assert decode(COMPRESS[codec](HONEST)) == HONEST
    assert decode(memoryview(COMPRESS[codec](b"x"))) == b"x"  # aiokafka may pass views


@pytest.mark.parametrize("codec", sorted(COMPRESS))
def test_a_bomb_is_refused_without_building_it(codec: str) -> None:
    payload = COMPRESS[codec](BOMB)
    assert len(payload) < len(BOMB) // 20  # snappy packs 21:1 at most; zstd 30,000:1
    decode = capped_decoders(CAP)[codec]
    tracemalloc.start()
    try:
        with pytest.raises(BatchTooLarge, match="over"):
            decode(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * CAP  # the cap and a copy, never the 200 MB


def test_a_raw_snappy_block_and_concatenated_gzip_members_are_read() -> None:
    decoders = capped_decoders(CAP)
    raw = bytes(cramjam.snappy.compress_raw(HONEST))
    assert decoders["snappy_decode"](raw) == HONEST
    members = gzip.compress(b"first ") + gzip.compress(b"second")
    assert decoders["gzip_decode"](members) == b"first second"


def test_a_truncated_batch_is_an_error_not_a_short_batch() -> None:
    decoders = capped_decoders(CAP)
    with pytest.raises(Exception, match="truncated"):
        decoders["gzip_decode"](gzip.compress(HONEST)[:-100])
