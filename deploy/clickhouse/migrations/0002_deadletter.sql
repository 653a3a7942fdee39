-- Everything the worker could not process, with the reason and the original bytes.
CREATE TABLE IF NOT EXISTS ${database}.deadletter
(
    failed_at        DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    reason           LowCardinality(String),
    detail           String CODEC(ZSTD(3)),
    source_topic     LowCardinality(String),
    source_partition UInt16,
    source_offset    UInt64,
    event_id         Nullable(String),
    key              Nullable(String),
    original         String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (reason, failed_at)
SETTINGS non_replicated_deduplication_window = 10000;
