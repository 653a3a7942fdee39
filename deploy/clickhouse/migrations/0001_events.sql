-- Audit events, one row per event. Partitioned by day (cheap retention, pruning by time);
-- ordered for the analyst's usual question: one tenant, one sandbox, a time range.
CREATE TABLE IF NOT EXISTS ${database}.events
(
    event_id        String CODEC(ZSTD(1)),
    ts              DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    tenant          LowCardinality(String),
    sandbox_id      String CODEC(ZSTD(1)),
    seq             UInt64 CODEC(Delta, ZSTD(1)),
    category        Enum8('process' = 1, 'file' = 2, 'network' = 3, 'permission' = 4,
                          'data_transfer' = 5, 'config' = 6, 'api' = 7, 'auth' = 8,
                          'resource' = 9, 'lifecycle' = 10),
    action          LowCardinality(String),
    level           Enum8('debug' = 1, 'info' = 2, 'notice' = 3, 'warning' = 4,
                          'error' = 5, 'critical' = 6),
    outcome         Enum8('success' = 1, 'failure' = 2, 'denied' = 3),
    actor_user      LowCardinality(String),
    actor_uid       Nullable(UInt32),
    actor_pid       Nullable(UInt32),
    actor_ppid      Nullable(UInt32),
    actor_process   LowCardinality(String),
    actor_cmdline   String CODEC(ZSTD(3)),
    object          String CODEC(ZSTD(3)),
    bytes           Nullable(UInt64),
    attributes      Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    prev_hash       Nullable(FixedString(32)),
    hash            Nullable(FixedString(32)),
    -- Where the row came from: provenance for replays and the exactly-once sink.
    kafka_partition UInt16,
    kafka_offset    UInt64 CODEC(Delta, ZSTD(1)),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    INDEX idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_user actor_user TYPE set(256) GRANULARITY 4,
    INDEX idx_object object TYPE tokenbf_v1(8192, 3, 0) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (tenant, sandbox_id, ts, seq)
SETTINGS non_replicated_deduplication_window = 10000;
