-- 5: one touched row per entity and block, with how many of the block's events named it (0: a call only). A
-- dense block names an entity many times, and each event was a row of its own (log_index, -1 for a call)
CREATE TABLE touched_by_block (
    job_id    TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    block     BIGINT NOT NULL,
    events    INTEGER NOT NULL,
    created   TEXT COLLATE "C",
    PRIMARY KEY (job_id, kind, entity_id, block)
);
INSERT INTO touched_by_block (job_id, kind, entity_id, block, events, created)
SELECT job_id, kind, entity_id, block, SUM(CASE WHEN log_index >= 0 THEN 1 ELSE 0 END), MAX(created)
FROM touched GROUP BY job_id, kind, entity_id, block;
DROP TABLE touched;
ALTER TABLE touched_by_block RENAME TO touched;
ALTER TABLE touched RENAME CONSTRAINT touched_by_block_pkey TO touched_pkey;
ALTER TABLE touched RENAME CONSTRAINT touched_by_block_job_id_fkey TO touched_job_id_fkey;
