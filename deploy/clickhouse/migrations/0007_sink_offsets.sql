-- The highest Kafka offset stored per partition of the events topic, kept by a
-- materialized view as part of every insert into events. A worker that (re)gains a
-- partition reads it and skips the messages up to it: they are stored already (the sink
-- stores whole messages, one block after the other), so a crash between an insert and
-- the offset commit stores nothing twice. One events table is fed by one events topic.
CREATE TABLE IF NOT EXISTS ${database}.events_sink_offsets
(
    kafka_partition UInt16,
    max_offset      SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY kafka_partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_sink_offsets_mv
TO ${database}.events_sink_offsets
AS SELECT kafka_partition, max(kafka_offset) AS max_offset
FROM ${database}.events
GROUP BY kafka_partition;

-- Rows stored before this migration.
INSERT INTO ${database}.events_sink_offsets
SELECT kafka_partition, max(kafka_offset) FROM ${database}.events GROUP BY kafka_partition;
