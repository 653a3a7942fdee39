-- auditpipe on a ClickHouse cluster: ReplicatedMergeTree tables on every shard, and
-- Distributed tables over them under the names the pipeline uses. The same schema as
-- deploy/clickhouse/migrations/ (up to 0009), for a cluster named {cluster} with the
-- macros {shard} and {replica} defined on each server (see README.md next to this file).
-- Apply with:  clickhouse-client --multiquery < schema.sql   (as an administrator)

CREATE DATABASE IF NOT EXISTS audit ON CLUSTER '{cluster}';

-- Events: sharded by sandbox, so one sandbox's chain lives on one shard (verify's window
-- functions run per shard) and a tenant's sandboxes spread over all shards.
CREATE TABLE IF NOT EXISTS audit.events_local ON CLUSTER '{cluster}'
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
    actor_parent_process LowCardinality(String) DEFAULT '',
    actor_parent_cmdline String DEFAULT '' CODEC(ZSTD(3)),
    object          String CODEC(ZSTD(3)),
    bytes           Nullable(UInt64),
    attributes      Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    prev_hash       Nullable(FixedString(32)),
    hash            Nullable(FixedString(32)),
    owner           LowCardinality(String) DEFAULT '',
    environment     LowCardinality(String) DEFAULT '',
    image           LowCardinality(String) DEFAULT '',
    labels          Map(LowCardinality(String), String) DEFAULT map() CODEC(ZSTD(3)),
    sandbox_known   Bool DEFAULT false,
    severity        Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4) DEFAULT 'low',
    matched_rules   Array(LowCardinality(String)) DEFAULT [],
    repeat_count    UInt32 DEFAULT 1,
    repeat_seqs     Array(UInt64),
    repeat_hashes   Array(FixedString(32)),
    repeat_prev_hashes Array(FixedString(32)),
    kafka_partition UInt16,
    kafka_offset    UInt64 CODEC(Delta, ZSTD(1)),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3) CODEC(Delta, ZSTD(1)),
    INDEX idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_user actor_user TYPE set(256) GRANULARITY 4,
    INDEX idx_object object TYPE tokenbf_v1(8192, 3, 0) GRANULARITY 4
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/audit/events', '{replica}')
PARTITION BY toDate(ts)
ORDER BY (tenant, sandbox_id, ts, seq)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS audit.events ON CLUSTER '{cluster}' AS audit.events_local
ENGINE = Distributed('{cluster}', audit, events_local, cityHash64(tenant, sandbox_id));

-- The highest offset stored per Kafka partition (exactly-once sink): one row per shard
-- and partition; the sink reads max() over all shards through the Distributed table.
CREATE TABLE IF NOT EXISTS audit.events_sink_offsets_local ON CLUSTER '{cluster}'
(
    kafka_partition UInt16,
    max_offset      SimpleAggregateFunction(max, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/audit/events_sink_offsets', '{replica}')
ORDER BY kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit.events_sink_offsets_mv ON CLUSTER '{cluster}'
TO audit.events_sink_offsets_local
DEFINER = CURRENT_USER SQL SECURITY DEFINER
AS SELECT kafka_partition, max(kafka_offset) AS max_offset
FROM audit.events_local GROUP BY kafka_partition;

CREATE TABLE IF NOT EXISTS audit.events_sink_offsets ON CLUSTER '{cluster}'
AS audit.events_sink_offsets_local
ENGINE = Distributed('{cluster}', audit, events_sink_offsets_local);

-- Rollups, per shard (materialized views over events_local), read through Distributed.
CREATE TABLE IF NOT EXISTS audit.events_per_minute_local ON CLUSTER '{cluster}'
(
    minute DateTime('UTC'), tenant LowCardinality(String), sandbox_id String,
    category LowCardinality(String), level LowCardinality(String), events UInt64, bytes UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/audit/events_per_minute', '{replica}', (events, bytes))
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, sandbox_id, minute, category, level)
TTL minute + toIntervalSecond(63072000) DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit.events_per_minute_mv ON CLUSTER '{cluster}'
TO audit.events_per_minute_local
DEFINER = CURRENT_USER SQL SECURITY DEFINER
AS SELECT toStartOfMinute(ts) AS minute, tenant, sandbox_id, toString(category) AS category,
          toString(level) AS level, sum(repeat_count) AS events, sum(ifNull(bytes, 0)) AS bytes
FROM audit.events_local GROUP BY minute, tenant, sandbox_id, category, level;

CREATE TABLE IF NOT EXISTS audit.events_per_minute ON CLUSTER '{cluster}' AS audit.events_per_minute_local
ENGINE = Distributed('{cluster}', audit, events_per_minute_local);

CREATE TABLE IF NOT EXISTS audit.resource_per_minute_local ON CLUSTER '{cluster}'
(
    minute DateTime('UTC'), tenant LowCardinality(String), sandbox_id String,
    samples SimpleAggregateFunction(sum, UInt64), cpu_pct AggregateFunction(avg, Float64),
    cpu_pct_max SimpleAggregateFunction(max, Float64), mem_mb_max SimpleAggregateFunction(max, Float64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/audit/resource_per_minute', '{replica}')
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, sandbox_id, minute)
TTL minute + toIntervalSecond(63072000) DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit.resource_per_minute_mv ON CLUSTER '{cluster}'
TO audit.resource_per_minute_local
DEFINER = CURRENT_USER SQL SECURITY DEFINER
AS SELECT toStartOfMinute(ts) AS minute, tenant, sandbox_id, toUInt64(count()) AS samples,
          avgState(toFloat64OrZero(attributes['cpu_pct'])) AS cpu_pct,
          max(toFloat64OrZero(attributes['cpu_pct'])) AS cpu_pct_max,
          max(toFloat64OrZero(attributes['mem_mb'])) AS mem_mb_max
FROM audit.events_local WHERE category = 'resource' GROUP BY minute, tenant, sandbox_id;

CREATE TABLE IF NOT EXISTS audit.resource_per_minute ON CLUSTER '{cluster}' AS audit.resource_per_minute_local
ENGINE = Distributed('{cluster}', audit, resource_per_minute_local);

CREATE TABLE IF NOT EXISTS audit.events_policy_rollup_local ON CLUSTER '{cluster}'
(
    minute DateTime('UTC'), tenant LowCardinality(String), sandbox_id String,
    environment LowCardinality(String), category LowCardinality(String),
    level LowCardinality(String), events UInt64
)
ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/audit/events_policy_rollup', '{replica}', events)
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, sandbox_id, minute, category, level, environment)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS audit.events_policy_rollup ON CLUSTER '{cluster}' AS audit.events_policy_rollup_local
ENGINE = Distributed('{cluster}', audit, events_policy_rollup_local, cityHash64(tenant, sandbox_id));

-- Alerts, sharded like the events of their sandbox.
CREATE TABLE IF NOT EXISTS audit.alerts_local ON CLUSTER '{cluster}'
(
    alert_id UUID, rule_id LowCardinality(String), title LowCardinality(String),
    severity Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4),
    tags Array(LowCardinality(String)), tenant LowCardinality(String), sandbox_id String,
    first_ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    last_ts DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    count UInt64, evidence Array(String) CODEC(ZSTD(3)),
    created_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_rule rule_id TYPE set(0) GRANULARITY 4,
    INDEX idx_evidence evidence TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/audit/alerts', '{replica}')
PARTITION BY toYYYYMM(last_ts)
ORDER BY (tenant, sandbox_id, first_ts, alert_id)
TTL toDateTime(last_ts) + toIntervalSecond(31536000) DELETE
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS audit.alerts ON CLUSTER '{cluster}' AS audit.alerts_local
ENGINE = Distributed('{cluster}', audit, alerts_local, cityHash64(tenant, sandbox_id));

-- Signed chain-head checkpoints, sharded like their sandbox's events.
CREATE TABLE IF NOT EXISTS audit.chain_checkpoints_local ON CLUSTER '{cluster}'
(
    tenant LowCardinality(String), sandbox_id String, seq UInt64, hash FixedString(32),
    signed_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)), key_id LowCardinality(String),
    algorithm LowCardinality(String), signature FixedString(32)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/audit/chain_checkpoints', '{replica}')
PARTITION BY toYYYYMM(signed_at)
ORDER BY (tenant, sandbox_id, seq)
TTL toDateTime(signed_at) + toIntervalSecond(31536000) DELETE;

CREATE TABLE IF NOT EXISTS audit.chain_checkpoints ON CLUSTER '{cluster}' AS audit.chain_checkpoints_local
ENGINE = Distributed('{cluster}', audit, chain_checkpoints_local, cityHash64(tenant, sandbox_id));

-- Chain links of events the level policy kept back (verify follows the chain through them).
CREATE TABLE IF NOT EXISTS audit.chain_links_local ON CLUSTER '{cluster}'
(
    tenant LowCardinality(String), sandbox_id String, seq UInt64,
    ts DateTime64(3, 'UTC'), hash FixedString(32), prev_hash FixedString(32),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/audit/chain_links', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, sandbox_id, seq, hash)
TTL toDateTime(ts) + toIntervalSecond(31536000) DELETE;

CREATE TABLE IF NOT EXISTS audit.chain_links ON CLUSTER '{cluster}' AS audit.chain_links_local
ENGINE = Distributed('{cluster}', audit, chain_links_local, cityHash64(tenant, sandbox_id));

-- Dead letters and their replays: small, one shard is enough (the first).
CREATE TABLE IF NOT EXISTS audit.deadletter_local ON CLUSTER '{cluster}'
(
    failed_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)), reason LowCardinality(String),
    detail String CODEC(ZSTD(3)), source_topic LowCardinality(String), source_partition UInt16,
    source_offset UInt64, event_id Nullable(String), key Nullable(String),
    original String CODEC(ZSTD(3))
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/audit/deadletter', '{replica}')
PARTITION BY toYYYYMM(failed_at)
ORDER BY (reason, failed_at)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS audit.deadletter ON CLUSTER '{cluster}' AS audit.deadletter_local
ENGINE = Distributed('{cluster}', audit, deadletter_local, 0);

CREATE TABLE IF NOT EXISTS audit.deadletter_replays_local ON CLUSTER '{cluster}'
(
    source_topic LowCardinality(String), source_partition UInt16, source_offset UInt64,
    event_id String, replayed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/audit/deadletter_replays', '{replica}')
ORDER BY (source_topic, source_partition, source_offset, event_id);

CREATE TABLE IF NOT EXISTS audit.deadletter_replays ON CLUSTER '{cluster}' AS audit.deadletter_replays_local
ENGINE = Distributed('{cluster}', audit, deadletter_replays_local, 0);
