-- What the sink has stored, in a form the ingest role cannot forge. Before, the highest
-- stored offset per partition came from any row of events: an insert of one row with
-- kafka_offset near 2^64 (the ingest role may insert events) made the next worker of the
-- partition skip every message as "already stored" and commit past them. Now each row
-- carries sink_mac, an HMAC of (topic, partition, offset) under the worker's key, which
-- the database never sees; the view keeps, per insert and partition, the highest offset
-- and its MAC. A worker gaining a partition trusts only the highest offset below the
-- partition's end whose MAC is valid (pipeline/sink/clickhouse/progress.py).
ALTER TABLE ${database}.events
    ADD COLUMN IF NOT EXISTS sink_mac FixedString(16) DEFAULT '' AFTER kafka_offset;

CREATE TABLE IF NOT EXISTS ${database}.events_sink_progress
(
    kafka_partition UInt16,
    max_offset      UInt64,
    mac             FixedString(16),
    stored_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (kafka_partition, max_offset)
TTL toDateTime(stored_at) + toIntervalDay(30) DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_sink_progress_mv
TO ${database}.events_sink_progress
AS SELECT kafka_partition, max(kafka_offset) AS max_offset,
          argMax(sink_mac, kafka_offset) AS mac
FROM ${database}.events
GROUP BY kafka_partition;

-- The unsigned predecessor is no longer read or fed.
DROP VIEW IF EXISTS ${database}.events_sink_offsets_mv;
