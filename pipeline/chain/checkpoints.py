"""Signed checkpoints of each sandbox's chain head: the message, the signing key and the
signer (checking them is ``checkpoint_check.py``).

Every ``checkpoints.interval_s`` (on a timer, so also while no batch arrives) and at a
clean shutdown, the worker writes, for each sandbox whose chain advanced, a row to
``audit.chain_checkpoints``: the sandbox, the ``seq`` and ``hash`` of its last chained
event stored, the time, and an HMAC-SHA256 signature under a key the database never
sees. Someone who can write to ClickHouse can rewrite a sandbox's history from some point
on and recompute every hash after it, so the chain alone would still verify; they cannot
sign a checkpoint for the new hashes.

The checkpoints of a sandbox form a chain of their own (version 2): each is numbered
(``counter``, 1, 2, ...) and signs the previous one's signature (``prev_signature``, 32
zero bytes for the first). A checkpoint removed from the middle, or the newest ones
removed or replaced by older ones (a roll-back), breaks it; and each is also published
to the Kafka topic ``kafka.topic_checkpoints``, a second copy out of ClickHouse's
reach, so that removing the newest checkpoints together with the newest events is
found too.

The signed message (version 2) is the values ``v2``, tenant, sandbox_id, counter, seq,
hash (hex), signed_at (ms) and prev_signature (hex), each written as ``<n>:<bytes>``
(its UTF-8 length in bytes, then the bytes), like the hash chain's canonical form: no
value can be confused with another (``("a|b", "c")`` and ``("a", "b|c")`` sign apart).
Version 1 rows (algorithm ``hmac-sha256``: ``v1|tenant|sandbox|seq|hash|at``, unchained)
are still checked as they were written. The key is ``checkpoints.key`` (a secret, e.g.
``AUDITPIPE_CHECKPOINTS_KEY``) or else the file ``checkpoints.key_file`` (default
``$AUDITPIPE_HOME/checkpoint.key``, created with 32 random bytes on first use, mode 0600).

>>> key = b"k" * 32
>>> first = sign(key, "acme", "sb-1", 1, 7, "ab" * 32, 1_700_000_000_000, GENESIS)
>>> valid(key, "acme", "sb-1", 1, 7, "ab" * 32, 1_700_000_000_000, GENESIS, first)
True
>>> valid(key, "acme", "sb-1", 1, 8, "ab" * 32, 1_700_000_000_000, GENESIS, first)
False
>>> message("a|b", "c", 1, 1, "00", 0, GENESIS) != message("a", "b|c", 1, 1, "00", 0, GENESIS)
True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings

ALGORITHM = "hmac-sha256-v2"
"""Version 2: length-prefixed message, numbered and chained to the previous checkpoint."""
ALGORITHM_V1 = "hmac-sha256"
GENESIS = bytes(32)
"""The prev_signature of a sandbox's first checkpoint."""
CHECKPOINT_TTL_MS = 31_536_000_000
"""How long chain_checkpoints keeps a row (its TTL, migration 0009): 365 days."""
CHECKPOINT_COLUMNS = (
    "tenant",
    "sandbox_id",
    "seq",
    "hash",
    "signed_at",
    "key_id",
    "algorithm",
    "signature",
    "counter",
    "prev_signature",
)


class NoKey(Exception):
    """No checkpoint key is configured and the key file does not exist."""


def load_key(settings: Settings, *, create: bool = True) -> bytes:
    """The signing key: the configured secret, or the key file (created if missing and
    ``create``; else NoKey)."""
    config = settings.checkpoints
    if config.key is not None and config.key.get_secret_value():
        return config.key.get_secret_value().encode()
    path = config.key_file or settings.home / "checkpoint.key"
    if not path.exists() and not create:
        raise NoKey(f"no checkpoint key: set checkpoints.key, or the file {path} is missing")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def message(
    tenant: str,
    sandbox_id: str,
    counter: int,
    seq: int,
    hash_hex: str,
    signed_at_ms: int,
    prev_signature: bytes,
) -> bytes:
    """The signed bytes (version 2): every value length-prefixed."""
    values = ("v2", tenant, sandbox_id, str(counter), str(seq), hash_hex.lower(),
              str(signed_at_ms), prev_signature.hex())  # fmt: skip
    return b"".join(b"%d:%s" % (len(v.encode()), v.encode()) for v in values)


def message_v1(tenant: str, sandbox_id: str, seq: int, hash_hex: str, at_ms: int) -> bytes:
    return f"v1|{tenant}|{sandbox_id}|{seq}|{hash_hex.lower()}|{at_ms}".encode()


def sign(
    key: bytes,
    tenant: str,
    sandbox_id: str,
    counter: int,
    seq: int,
    hash_hex: str,
    at_ms: int,
    prev_signature: bytes,
) -> bytes:
    signed = message(tenant, sandbox_id, counter, seq, hash_hex, at_ms, prev_signature)
    return hmac.new(key, signed, hashlib.sha256).digest()


def valid(
    key: bytes,
    tenant: str,
    sandbox_id: str,
    counter: int,
    seq: int,
    hash_hex: str,
    at_ms: int,
    prev_signature: bytes,
    signature: bytes,
) -> bool:
    expected = sign(key, tenant, sandbox_id, counter, seq, hash_hex, at_ms, prev_signature)
    return hmac.compare_digest(expected, signature)


def valid_v1(
    key: bytes, tenant: str, sandbox_id: str, seq: int, hash_hex: str, at_ms: int, sig: bytes
) -> bool:
    signed = message_v1(tenant, sandbox_id, seq, hash_hex, at_ms)
    return hmac.compare_digest(hmac.new(key, signed, hashlib.sha256).digest(), sig)


@dataclass(frozen=True)
class Checkpoint:
    tenant: str
    sandbox_id: str
    counter: int
    seq: int
    hash_hex: str
    signed_at_ms: int
    prev_signature: bytes
    signature: bytes
    key_id: str

    def row(self) -> tuple[Any, ...]:
        """The row in CHECKPOINT_COLUMNS order."""
        return (self.tenant, self.sandbox_id, self.seq, bytes.fromhex(self.hash_hex),
                self.signed_at_ms, self.key_id, ALGORITHM, self.signature, self.counter,
                self.prev_signature)  # fmt: skip

    def record(self) -> dict[str, Any]:
        """The JSON form published to the checkpoints topic."""
        return {
            "tenant": self.tenant,
            "sandbox_id": self.sandbox_id,
            "counter": self.counter,
            "seq": self.seq,
            "hash": self.hash_hex,
            "signed_at": self.signed_at_ms,
            "prev_signature": self.prev_signature.hex(),
            "signature": self.signature.hex(),
            "key_id": self.key_id,
            "algorithm": ALGORITHM,
        }


Last = dict[tuple[str, str], tuple[int, bytes]]
"""(tenant, sandbox_id) -> (counter, signature) of its newest checkpoint."""


class CheckpointSigner:
    """Signs chain heads into each sandbox's checkpoint chain.

    It continues each sandbox's chain from its newest stored checkpoint, asked of
    ``load_last`` the first time the sandbox is signed in this process (a restarted
    worker, or one that gained the sandbox's partition, picks up where the last left).
    """

    def __init__(
        self, key: bytes, key_id: str, load_last: Callable[[set[tuple[str, str]]], Last]
    ) -> None:
        self.key = key
        self.key_id = key_id
        self.load_last = load_last
        self.last: Last = {}

    def sign(self, heads: Iterable[tuple[str, str, int, str]], now_ms: int) -> list[Checkpoint]:
        heads = list(heads)
        unknown = {(t, s) for t, s, _, _ in heads} - self.last.keys()
        if unknown:
            loaded = self.load_last(unknown)
            for sandbox in unknown:
                self.last[sandbox] = loaded.get(sandbox, (0, GENESIS))
        out = []
        for tenant, sandbox_id, seq, hash_hex in heads:
            counter, previous = self.last[(tenant, sandbox_id)]
            counter += 1
            signature = sign(self.key, tenant, sandbox_id, counter, seq, hash_hex, now_ms, previous)
            out.append(Checkpoint(tenant, sandbox_id, counter, seq, hash_hex, now_ms, previous,
                                  signature, self.key_id))  # fmt: skip
            self.last[(tenant, sandbox_id)] = (counter, signature)
        return out


def checkpoint_columns(checkpoints: list[Checkpoint]) -> list[list[Any]]:
    """Columns (CHECKPOINT_COLUMNS order) of the checkpoints' rows."""
    rows = [c.row() for c in checkpoints]
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


def last_checkpoints(client_query: Any, database: str, sandboxes: set[tuple[str, str]]) -> Last:
    """The newest version-2 checkpoint (counter, signature) of each sandbox, from
    ClickHouse (``client_query(sql, parameters) -> rows``); for a sandbox whose
    checkpoints all expired by retention, the one its horizon recorded
    (``pipeline/chain/seals.py``), so its checkpoint chain goes on from there."""
    if not sandboxes:
        return {}
    rows = client_query(
        f"SELECT tenant, sandbox_id, max(counter), argMax(signature, counter) FROM ("
        f"SELECT tenant, sandbox_id, counter, signature FROM {database}.chain_checkpoints "
        f"WHERE algorithm = '{ALGORITHM}' AND (tenant, sandbox_id) IN %(sandboxes)s "
        f"UNION ALL SELECT tenant, sandbox_id, counter, signature "
        f"FROM {database}.chain_horizons WHERE (tenant, sandbox_id) IN %(sandboxes)s"
        ") GROUP BY tenant, sandbox_id",
        {"sandboxes": sorted(sandboxes)},
    )
    return {(str(t), str(s)): (int(c), _bytes(sig)) for t, s, c, sig in rows}


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")
