-- The links of chained events the level policy kept back (not stored in events): their
-- seq, hash and prev_hash, so `auditpipe verify` follows each sandbox's chain through
-- them instead of reporting their seqs as deleted. A row sent twice (a retried batch)
-- is merged away; verify reads distinct rows.
CREATE TABLE IF NOT EXISTS ${database}.chain_links
(
    tenant      LowCardinality(String),
    sandbox_id  String,
    seq         UInt64,
    ts          DateTime64(3, 'UTC'),
    hash        FixedString(32),
    prev_hash   FixedString(32),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, sandbox_id, seq, hash)
TTL toDateTime(ts) + toIntervalSecond(31536000) DELETE
SETTINGS non_replicated_deduplication_window = 10000;
