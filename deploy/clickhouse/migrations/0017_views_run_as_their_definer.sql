-- The materialized views run with the rights of the user who made them (the administrator
-- running `auditpipe init`), not of the user whose insert fills them. Made without an SQL
-- SECURITY clause, a view ran as the inserting user: the least-privileged `ingest` user,
-- which may insert into events but not read them back, had every insert refused ("while
-- pushing to view"), and the sink retried it for ever. Reading back what it inserted is
-- exactly what ingest must not do, so the views get the right instead of the user.
-- A view made later must say `DEFINER = CURRENT_USER SQL SECURITY DEFINER` too
-- (tests/schema/test_migrations.py checks every one).
ALTER TABLE ${database}.events_per_minute_mv MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
ALTER TABLE ${database}.resource_per_minute_mv MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
ALTER TABLE ${database}.events_sink_progress_mv MODIFY SQL SECURITY DEFINER DEFINER = CURRENT_USER;
