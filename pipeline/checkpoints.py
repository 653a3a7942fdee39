"""Signed checkpoints of each sandbox's chain head, and their verification.

Every ``checkpoints.interval_s`` the worker writes, for each sandbox whose chain advanced,
a row to ``audit.chain_checkpoints``: the sandbox, the ``seq`` and ``hash`` of its last
chained event stored, the time, and an HMAC-SHA256 signature over all of these under a
key the database never sees. Someone who can write to ClickHouse can rewrite a sandbox's
history from some point on and recompute every hash after it, so the chain alone would
still verify; they cannot sign a checkpoint for the new hashes. ``auditpipe verify``
checks each checkpoint's signature and that the stored row at its ``seq`` still has its
``hash``.

The signed message (version 1) is ``v1|<tenant>|<sandbox_id>|<seq>|<hash hex>|<signed_at
ms>``, UTF-8. The key is ``checkpoints.key`` (give it as a secret, e.g.
``AUDITPIPE_CHECKPOINTS_KEY``) or else the file ``checkpoints.key_file`` (default
``$AUDITPIPE_HOME/checkpoint.key``, created with 32 random bytes on first use, mode 0600).

>>> key = b"k" * 32
>>> signature = sign(key, "acme", "sb-1", 7, "ab" * 32, 1_700_000_000_000)
>>> valid(key, "acme", "sb-1", 7, "ab" * 32, 1_700_000_000_000, signature)
True
>>> valid(key, "acme", "sb-1", 8, "ab" * 32, 1_700_000_000_000, signature)
False
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.config import Settings
from pipeline.verify import sandbox_filters

ALGORITHM = "hmac-sha256"
CHECKPOINT_COLUMNS = (
    "tenant",
    "sandbox_id",
    "seq",
    "hash",
    "signed_at",
    "key_id",
    "algorithm",
    "signature",
)


class NoKey(Exception):
    """No checkpoint key is configured and the key file does not exist."""


def load_key(settings: Settings, *, create: bool = True) -> bytes:
    """The signing key: the configured secret, or the key file (created if missing and
    ``create``; else NoKey)."""
    config = settings.checkpoints
    if config.key:
        return config.key.encode()
    path = config.key_file or settings.home / "checkpoint.key"
    if not path.exists() and not create:
        raise NoKey(f"no checkpoint key: set checkpoints.key, or the file {path} is missing")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def message(tenant: str, sandbox_id: str, seq: int, hash_hex: str, signed_at_ms: int) -> bytes:
    return f"v1|{tenant}|{sandbox_id}|{seq}|{hash_hex.lower()}|{signed_at_ms}".encode()


def sign(key: bytes, tenant: str, sandbox_id: str, seq: int, hash_hex: str, at_ms: int) -> bytes:
    return hmac.new(key, message(tenant, sandbox_id, seq, hash_hex, at_ms), hashlib.sha256).digest()


def valid(
    key: bytes, tenant: str, sandbox_id: str, seq: int, hash_hex: str, at_ms: int, sig: bytes
) -> bool:
    return hmac.compare_digest(sign(key, tenant, sandbox_id, seq, hash_hex, at_ms), sig)


def checkpoint_columns(
    heads: Iterable[tuple[str, str, int, str]], key: bytes, key_id: str, now_ms: int
) -> list[list[Any]]:
    """Rows (CHECKPOINT_COLUMNS order, as columns) for (tenant, sandbox, seq, hash hex)."""
    rows = [
        (t, s, q, bytes.fromhex(h), now_ms, key_id, ALGORITHM, sign(key, t, s, q, h, now_ms))
        for t, s, q, h in heads
    ]
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


@dataclass(frozen=True)
class CheckpointFinding:
    tenant: str
    sandbox_id: str
    seq: int
    detail: str


def verify_checkpoints(
    client: Client,
    database: str,
    key: bytes,
    key_id: str,
    *,
    tenant: str | None = None,
    sandbox: str | None = None,
) -> tuple[int, list[CheckpointFinding]]:
    """(checkpoints checked, findings): bad signatures, and stored rows that no longer
    match a signed head."""
    where, params = sandbox_filters(tenant, sandbox, alias="c.")
    rows = client.query(
        f"""
        SELECT c.tenant, c.sandbox_id, c.seq, hex(c.hash), toUnixTimestamp64Milli(c.signed_at),
               c.key_id, c.signature, groupArray(hex(assumeNotNull(e.hash))) AS stored
        FROM {database}.chain_checkpoints AS c
        LEFT JOIN (SELECT tenant, sandbox_id, seq, hash FROM {database}.events
                   WHERE hash IS NOT NULL) AS e
          ON e.tenant = c.tenant AND e.sandbox_id = c.sandbox_id AND e.seq = c.seq
        {where}
        GROUP BY c.tenant, c.sandbox_id, c.seq, c.hash, c.signed_at, c.key_id, c.signature
        ORDER BY c.tenant, c.sandbox_id, c.seq
        """,
        parameters=params,
    ).result_rows
    findings = []
    for t, s, seq, hash_hex, at_ms, used_key, signature, stored in rows:
        where_seq = (str(t), str(s), int(seq))
        sig = bytes(signature) if not isinstance(signature, str) else signature.encode("latin-1")
        if used_key != key_id:
            findings.append(
                CheckpointFinding(*where_seq, f"signed with key {used_key!r}, not {key_id!r}")
            )
        elif not valid(key, *where_seq, hash_hex, int(at_ms), sig):
            findings.append(
                CheckpointFinding(
                    *where_seq, "signature does not match: forged or altered checkpoint"
                )
            )
        stored_hashes = [h for h in stored if h and h != "0" * 64]
        if not stored_hashes:
            findings.append(CheckpointFinding(*where_seq, "no stored row at the checkpointed seq"))
        elif hash_hex.lower() not in (h.lower() for h in stored_hashes):
            findings.append(
                CheckpointFinding(
                    *where_seq,
                    f"stored hash {stored_hashes[0][:16].lower()}... is not the signed "
                    f"{hash_hex[:16].lower()}...: history rewritten",
                )
            )
    return len(rows), findings


def database_has_checkpoints(client: Client, database: str) -> bool:
    return bool(
        client.query(
            "SELECT count() FROM system.tables WHERE database = {db:String} "
            "AND name = 'chain_checkpoints'",
            parameters={"db": database},
        ).result_rows[0][0]
    )
