-- Events over a sandbox's or tenant's rate limit are stored later, from the deferred
-- topic (pipeline/stages/fairness.py). Their rows are marked (an analyst sees that an
-- event waited), and their kafka_partition/kafka_offset are the deferred topic's: the
-- sink's progress of the two topics is kept apart, or one topic's offsets would make the
-- worker skip the other's messages as already stored.
ALTER TABLE ${database}.events
    ADD COLUMN IF NOT EXISTS deferred Bool DEFAULT false AFTER sink_mac;

ALTER TABLE ${database}.events_sink_progress
    ADD COLUMN IF NOT EXISTS deferred Bool DEFAULT false;

-- The view is made again with the flag (run init before the workers start: an insert
-- between these two statements would leave no progress row, which only makes a worker
-- that gains its partition skip nothing: the insert tokens absorb the replay).
DROP VIEW IF EXISTS ${database}.events_sink_progress_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_sink_progress_mv
TO ${database}.events_sink_progress
AS SELECT deferred, kafka_partition, max(kafka_offset) AS max_offset,
          argMax(sink_mac, kafka_offset) AS mac
FROM ${database}.events
GROUP BY deferred, kafka_partition;
