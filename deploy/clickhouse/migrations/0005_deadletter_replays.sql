-- Dead letters sent through the pipeline again (`auditpipe deadletter replay`), so that a
-- second replay skips them unless asked.
CREATE TABLE IF NOT EXISTS ${database}.deadletter_replays
(
    source_topic     LowCardinality(String),
    source_partition UInt16,
    source_offset    UInt64,
    event_id         String,
    replayed_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (source_topic, source_partition, source_offset, event_id);
