-- Materialized-view rollups, filled as events are inserted (and from the rows stored
-- before this migration). Query them with sum()/max()/avgMerge() ... GROUP BY: parts are
-- combined as they merge.

-- Events per minute by tenant, sandbox, category and level.
CREATE TABLE IF NOT EXISTS ${database}.events_per_minute
(
    minute     DateTime('UTC'),
    tenant     LowCardinality(String),
    sandbox_id String,
    category   LowCardinality(String),
    level      LowCardinality(String),
    events     UInt64,
    bytes      UInt64
)
ENGINE = SummingMergeTree((events, bytes))
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, sandbox_id, minute, category, level)
TTL minute + toIntervalSecond(63072000) DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_per_minute_mv
TO ${database}.events_per_minute
AS SELECT
    toStartOfMinute(ts) AS minute, tenant, sandbox_id,
    toString(category) AS category, toString(level) AS level,
    count() AS events, sum(ifNull(bytes, 0)) AS bytes
FROM ${database}.events
GROUP BY minute, tenant, sandbox_id, category, level;

INSERT INTO ${database}.events_per_minute
SELECT toStartOfMinute(ts) AS minute, tenant, sandbox_id, toString(category), toString(level),
       count(), sum(ifNull(bytes, 0))
FROM ${database}.events
GROUP BY minute, tenant, sandbox_id, category, level;

-- Resource usage per sandbox per minute, from resource samples (attributes cpu_pct, mem_mb).
CREATE TABLE IF NOT EXISTS ${database}.resource_per_minute
(
    minute     DateTime('UTC'),
    tenant     LowCardinality(String),
    sandbox_id String,
    samples    SimpleAggregateFunction(sum, UInt64),
    cpu_pct    AggregateFunction(avg, Float64),
    cpu_pct_max SimpleAggregateFunction(max, Float64),
    mem_mb_max SimpleAggregateFunction(max, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, sandbox_id, minute)
TTL minute + toIntervalSecond(63072000) DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.resource_per_minute_mv
TO ${database}.resource_per_minute
AS SELECT
    toStartOfMinute(ts) AS minute, tenant, sandbox_id,
    toUInt64(count()) AS samples,
    avgState(toFloat64OrZero(attributes['cpu_pct'])) AS cpu_pct,
    max(toFloat64OrZero(attributes['cpu_pct'])) AS cpu_pct_max,
    max(toFloat64OrZero(attributes['mem_mb'])) AS mem_mb_max
FROM ${database}.events
WHERE category = 'resource'
GROUP BY minute, tenant, sandbox_id;

INSERT INTO ${database}.resource_per_minute
SELECT toStartOfMinute(ts) AS minute, tenant, sandbox_id, toUInt64(count()),
       avgState(toFloat64OrZero(attributes['cpu_pct'])),
       max(toFloat64OrZero(attributes['cpu_pct'])),
       max(toFloat64OrZero(attributes['mem_mb']))
FROM ${database}.events
WHERE category = 'resource'
GROUP BY minute, tenant, sandbox_id;
