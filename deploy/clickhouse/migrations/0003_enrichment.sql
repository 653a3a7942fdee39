-- Enrichment from the sandbox inventory, and normalised severity. Added to a table that
-- may already hold data: existing rows read the defaults.
ALTER TABLE ${database}.events
    ADD COLUMN IF NOT EXISTS owner LowCardinality(String) DEFAULT '' AFTER hash,
    ADD COLUMN IF NOT EXISTS environment LowCardinality(String) DEFAULT '' AFTER owner,
    ADD COLUMN IF NOT EXISTS image LowCardinality(String) DEFAULT '' AFTER environment,
    ADD COLUMN IF NOT EXISTS labels Map(LowCardinality(String), String) DEFAULT map() CODEC(ZSTD(3)) AFTER image,
    ADD COLUMN IF NOT EXISTS sandbox_known Bool DEFAULT false AFTER labels,
    ADD COLUMN IF NOT EXISTS severity Enum8('low' = 1, 'medium' = 2, 'high' = 3, 'critical' = 4) DEFAULT 'low' AFTER sandbox_known;
