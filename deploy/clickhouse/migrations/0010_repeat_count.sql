-- Noise reduction (the worker's collapse stage): a stored event can stand for repeats.
-- repeat_count is how many events the row stands for (1 for most); the repeats' seq,
-- hash and prev_hash keep the hash chain checkable by `auditpipe verify`.
ALTER TABLE ${database}.events
    ADD COLUMN IF NOT EXISTS repeat_count UInt32 DEFAULT 1 AFTER matched_rules,
    ADD COLUMN IF NOT EXISTS repeat_seqs Array(UInt64) AFTER repeat_count,
    ADD COLUMN IF NOT EXISTS repeat_hashes Array(FixedString(32)) AFTER repeat_seqs,
    ADD COLUMN IF NOT EXISTS repeat_prev_hashes Array(FixedString(32)) AFTER repeat_hashes;

-- Events per minute count the events a row stands for. (Rows inserted while this runs
-- may miss the rollup: run `auditpipe init` before the workers, as always.)
DROP VIEW IF EXISTS ${database}.events_per_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_per_minute_mv
TO ${database}.events_per_minute
AS SELECT
    toStartOfMinute(ts) AS minute, tenant, sandbox_id,
    toString(category) AS category, toString(level) AS level,
    sum(repeat_count) AS events, sum(ifNull(bytes, 0)) AS bytes
FROM ${database}.events
GROUP BY minute, tenant, sandbox_id, category, level;
