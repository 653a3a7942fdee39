-- Signed checkpoints of each sandbox's chain head (pipeline/checkpoints.py): what
-- `auditpipe verify` holds the stored rows against. Kept as long as security events.
CREATE TABLE IF NOT EXISTS ${database}.chain_checkpoints
(
    tenant     LowCardinality(String),
    sandbox_id String,
    seq        UInt64,
    hash       FixedString(32),
    signed_at  DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    key_id     LowCardinality(String),
    algorithm  LowCardinality(String),
    signature  FixedString(32)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(signed_at)
ORDER BY (tenant, sandbox_id, seq)
TTL toDateTime(signed_at) + toIntervalSecond(31536000) DELETE
SETTINGS non_replicated_deduplication_window = 10000;
