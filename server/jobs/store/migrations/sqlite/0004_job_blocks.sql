-- 4: the hash of every block of a job's reorg window, kept with its result: an incremental sync that continues
-- from the job finds where the chain forked from them (server/engine/reorgs.py), and the touches of those blocks
-- stay too (the result keeps the touched rows at or after its window)
CREATE TABLE job_blocks (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    block  INTEGER NOT NULL,
    hash   TEXT NOT NULL,
    PRIMARY KEY (job_id, block)
);
