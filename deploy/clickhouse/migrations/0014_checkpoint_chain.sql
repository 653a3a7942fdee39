-- Checkpoints chained per sandbox (pipeline/checkpoints.py, version 2): each numbered
-- and signing the previous one's signature, so a removed or rolled-back checkpoint is
-- found. Rows of version 1 (algorithm hmac-sha256) keep counter 0 and are checked as
-- before.
ALTER TABLE ${database}.chain_checkpoints
    ADD COLUMN IF NOT EXISTS counter UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS prev_signature FixedString(32) DEFAULT '';
