-- The job store's queries as PostgreSQL runs them, where SQLite's differ (sqlite.sql), and PostgreSQL's own.
-- Several servers share the database: claims skip the rows others are claiming, writes lock the job's row.

-- claimable_job --
-- The oldest pending job, or a running one whose lease ran out (seq: creation order within an instant),
-- locked; a job another transaction is claiming is skipped
SELECT id FROM jobs WHERE state = 'pending' OR (state = 'running' AND lease_expires < :now)
ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED;

-- job_for_update --
-- The job request_cancel decides on, locked: a claim in flight has committed (we see it running) or skips it
SELECT id, type, request, timeout_s, state, progress, message, request_id, created_at, started_at, ended_at,
       error_code, error_message, from_block, to_block, stats, checkpoint, cancel_requested, attempts, version,
       principal
FROM jobs WHERE id = :job_id FOR UPDATE;

-- job_holder_for_update --
-- The state and lease holder of a job about to be written to, locked until the write commits
SELECT state, owner FROM jobs WHERE id = :job_id FOR UPDATE;

-- update_progress --
-- A running job's progress (never lower), message and stats (only owner's, when owner is not NULL)
UPDATE jobs SET progress = GREATEST(progress, :progress), message = :message, stats = :stats,
    from_block = COALESCE(:from_block, from_block), to_block = COALESCE(:to_block, to_block),
    version = version + 1
WHERE id = :job_id AND state = 'running' AND (CAST(:owner AS TEXT) IS NULL OR owner = :owner);

-- cached_contents --
-- The cached content of the CIDs of a JSON array
SELECT cid, content FROM ipfs_content WHERE cid IN (SELECT jsonb_array_elements_text(:cids::jsonb));

-- lock --
-- Serialises the transactions that take this key until this one ends
SELECT pg_advisory_xact_lock(hashtextextended(:key, 0));

-- lease_clock --
-- Now, as leases count it: the database's clock, which every replica shares
SELECT EXTRACT(EPOCH FROM clock_timestamp()) AS now;

-- current_schema --
-- The schema the tables go in: the first of the search_path that exists (NULL: none does)
SELECT current_schema() AS schema;
