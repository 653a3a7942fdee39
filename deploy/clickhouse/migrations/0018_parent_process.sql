-- Schema v2: the acting process's parent (program and command line), for the rules and
-- Sigma's ParentImage / ParentCommandLine. Empty for events of v1 collectors and where
-- the source does not know the parent. Part of the hash chain when not empty
-- (pipeline/chain/hashing.py): `verify` rebuilds it from these columns.
ALTER TABLE ${database}.events
    ADD COLUMN IF NOT EXISTS actor_parent_process LowCardinality(String) DEFAULT ''
        AFTER actor_cmdline,
    ADD COLUMN IF NOT EXISTS actor_parent_cmdline String DEFAULT '' CODEC(ZSTD(3))
        AFTER actor_parent_process;
