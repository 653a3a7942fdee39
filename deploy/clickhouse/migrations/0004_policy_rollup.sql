-- Events the level policy kept back, counted per minute, sandbox, category and level.
-- SummingMergeTree adds up rows of the same key as parts merge; query with sum(events).
CREATE TABLE IF NOT EXISTS ${database}.events_policy_rollup
(
    minute      DateTime('UTC'),
    tenant      LowCardinality(String),
    sandbox_id  String,
    environment LowCardinality(String),
    category    LowCardinality(String),
    level       LowCardinality(String),
    events      UInt64
)
ENGINE = SummingMergeTree(events)
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, sandbox_id, minute, category, level, environment)
SETTINGS non_replicated_deduplication_window = 10000;
