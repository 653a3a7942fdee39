-- Alerts of the detection rules (also on the audit.alerts topic). alert_id is derived from
-- the rule, the sandbox and the first evidence event, so a replayed batch re-sends the same
-- ids; its insert carries a deduplication token made of them and is stored once.
CREATE TABLE IF NOT EXISTS ${database}.alerts
(
    alert_id    UUID,
    rule_id     LowCardinality(String),
    title       LowCardinality(String),
    severity    Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4),
    tags        Array(LowCardinality(String)),
    tenant      LowCardinality(String),
    sandbox_id  String,
    first_ts    DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    last_ts     DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    count       UInt64,
    evidence    Array(String) CODEC(ZSTD(3)),
    created_at  DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_rule rule_id TYPE set(0) GRANULARITY 4,
    INDEX idx_evidence evidence TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(last_ts)
ORDER BY (tenant, sandbox_id, first_ts, alert_id)
TTL toDateTime(last_ts) + toIntervalSecond(31536000) DELETE
SETTINGS non_replicated_deduplication_window = 10000;

-- The ids of the rules that matched each stored event (its evidence role).
ALTER TABLE ${database}.events
    ADD COLUMN IF NOT EXISTS matched_rules Array(LowCardinality(String)) DEFAULT [] AFTER severity;
