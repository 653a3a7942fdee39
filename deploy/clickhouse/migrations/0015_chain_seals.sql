-- Retention-aware tamper evidence (pipeline/seals.py, `auditpipe retention seal`).
--
-- chain_seals: before rows of a class expire, a signed record of each run of consecutive
-- chain items that expire together (first and last seq, the run's prev_hash and last
-- hash, when its rows expire), so `verify` follows the chain across the gap expiry
-- leaves, and only once that expiry is due. Kept as long as the longest class
-- (keep_until, set by the sealer); a sandbox's horizon takes over after that.
CREATE TABLE IF NOT EXISTS ${database}.chain_seals
(
    tenant        LowCardinality(String),
    sandbox_id    String,
    first_seq     UInt64,
    last_seq      UInt64,
    prev_hash     FixedString(32),
    hash          FixedString(32),
    items         UInt64,
    first_ts      DateTime64(3, 'UTC'),
    last_ts       DateTime64(3, 'UTC'),
    expires_from  DateTime('UTC'),
    expires_to    DateTime('UTC'),
    keep_until    DateTime('UTC'),
    sealed_at     DateTime64(3, 'UTC'),
    key_id        LowCardinality(String),
    mac           FixedString(32)
)
ENGINE = ReplacingMergeTree
ORDER BY (tenant, sandbox_id, first_seq, last_seq, hash)
TTL keep_until DELETE;

-- chain_horizons: per sandbox, the signed point before which its chain (seq, hash) and
-- its checkpoint chain (counter, signature) have expired by retention: once due_at has
-- passed, verify starts the sandbox's chain there instead of at the genesis. The newest
-- due row with a valid signature counts. No TTL: a horizon is needed as long as anything
-- after it remains, however long a sandbox was idle (at most one row per sandbox per
-- sealer run that moved it).
CREATE TABLE IF NOT EXISTS ${database}.chain_horizons
(
    tenant        LowCardinality(String),
    sandbox_id    String,
    seq           UInt64,
    hash          FixedString(32),
    counter       UInt64,
    signature     FixedString(32),
    due_at        DateTime('UTC'),
    sealed_at     DateTime64(3, 'UTC'),
    key_id        LowCardinality(String),
    mac           FixedString(32)
)
ENGINE = MergeTree
ORDER BY (tenant, sandbox_id, due_at);
