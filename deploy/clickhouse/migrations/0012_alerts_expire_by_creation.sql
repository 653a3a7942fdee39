-- Alerts expire by when they were raised, not by the time of their events: ClickHouse
-- drops already-expired rows at insert, so the alerts of a backfilled year-old log
-- (last_ts a year ago) never reached audit.alerts. Dead letters already expire by
-- failed_at, when they were received.
ALTER TABLE ${database}.alerts MODIFY TTL toDateTime(created_at) + toIntervalSecond(31536000) DELETE;
