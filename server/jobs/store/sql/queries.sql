-- The job store's queries that SQLite and PostgreSQL both run as they are (queries.py reads them by name).
-- Where the dialects differ, the query is in sqlite.sql and postgres.sql instead.
-- Parameters are named (:job_id); JSON columns are text (json.dumps in job_store.py). A parameter that may be
-- NULL is tested as CAST(:name AS type) IS NULL: PostgreSQL cannot tell the type of a bare parameter there.

-- get_job --
-- The job's columns that make a JobRecord
SELECT id, type, request, timeout_s, state, progress, message, request_id, created_at, started_at, ended_at,
       error_code, error_message, from_block, to_block, stats, checkpoint, cancel_requested, attempts, version,
       principal
FROM jobs WHERE id = :job_id;

-- append_event --
-- A job's snapshot after a change, under its new version: what WatchJob replays
INSERT INTO job_events (job_id, sequence, time, snapshot) VALUES (:job_id, :sequence, :time, :snapshot);

-- job_of_request_id --
-- The job an idempotency key started
SELECT job_id FROM request_ids WHERE request_id = :request_id;

-- remember_request_id --
-- Records the job an idempotency key started (a key purged or left by a deleted job starts a new one)
INSERT INTO request_ids (request_id, job_id, created_at) VALUES (:request_id, :job_id, :created_at)
ON CONFLICT (request_id) DO UPDATE SET job_id = excluded.job_id, created_at = excluded.created_at;

-- insert_job --
-- Stores a new job at version 1
INSERT INTO jobs (id, type, state, progress, message, request, request_id, timeout_s, created_at, version, principal)
VALUES (:id, :type, :state, :progress, :message, :request, :request_id, :timeout_s, :created_at, 1, :principal);

-- take_job --
-- Gives the job claimable_job found to owner, with a lease; the first start time counts
UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, :started_at), owner = :owner,
    lease_expires = :lease_expires, attempts = attempts + 1,
    message = CASE WHEN attempts > 0 THEN 'Resuming from checkpoint' ELSE 'Starting' END,
    version = version + 1
WHERE id = :job_id;

-- renew_lease --
-- Extends owner's lease on a running job, unless a cancel was asked
UPDATE jobs SET lease_expires = :lease_expires
WHERE id = :job_id AND owner = :owner AND state = 'running' AND NOT cancel_requested;

-- next_record_position --
-- Where the next record of this kind goes in the result
SELECT COALESCE(MAX(position) + 1, 0) AS position FROM records WHERE job_id = :job_id AND kind = :kind;

-- save_checkpoint --
-- The job's checkpoint: where a resumed job carries on
UPDATE jobs SET checkpoint = :checkpoint WHERE id = :job_id;

-- touched_entities --
-- Entity id and provenance of its creating event (NULL when not seen) of one kind, as saved so far
SELECT entity_id, MAX(created) AS created FROM touched WHERE job_id = :job_id AND kind = :kind GROUP BY entity_id;

-- touched_event_count --
-- How many events the saved touches at or after a block came from (a call's touch counts none)
SELECT COALESCE(SUM(events), 0) AS count FROM touched WHERE job_id = :job_id AND block >= :since;

-- forget_touched_from --
-- Drops the touches at or after a block (the chain changed there)
DELETE FROM touched WHERE job_id = :job_id AND block >= :from_block;

-- forget_touched --
-- Drops every touch of the job (working state, not part of the result)
DELETE FROM touched WHERE job_id = :job_id;

-- forget_records --
-- Drops every record of the job
DELETE FROM records WHERE job_id = :job_id;

-- record_ids --
-- The ids of the records of one kind saved so far
SELECT entity_id FROM records WHERE job_id = :job_id AND kind = :kind;

-- cancel_pending_job --
-- Ends a job that never started as cancelled
UPDATE jobs SET state = 'cancelled', ended_at = :ended_at, message = 'Cancelled before it started',
    error_code = 'JOB_CANCELLED', error_message = 'cancelled by request', version = version + 1
WHERE id = :job_id;

-- flag_cancel --
-- Asks the worker of a running job to stop (it sees the flag at its next heartbeat)
UPDATE jobs SET cancel_requested = TRUE, message = 'Cancelling', version = version + 1 WHERE id = :job_id;

-- finish_job --
-- Moves an unfinished job to a terminal state (only owner's, when owner is not NULL)
UPDATE jobs SET state = :state, message = :message, error_code = :error_code, error_message = :error_message,
    ended_at = :ended_at, owner = NULL, lease_expires = NULL,
    progress = CASE WHEN :state = 'completed' THEN 100 ELSE progress END,
    stats = COALESCE(:stats, stats), version = version + 1
WHERE id = :job_id AND state NOT IN ('completed', 'failed', 'cancelled')
    AND (CAST(:owner AS TEXT) IS NULL OR owner = :owner);

-- save_result --
-- A completed job's result summary
INSERT INTO results (job_id, summary) VALUES (:job_id, :summary)
ON CONFLICT (job_id) DO UPDATE SET summary = excluded.summary;

-- release_job --
-- Gives owner's running job back: pending again, to resume from its checkpoint
UPDATE jobs SET state = 'pending', owner = NULL, lease_expires = NULL,
    message = 'Interrupted by a server shutdown; waiting to resume', version = version + 1
WHERE id = :job_id AND owner = :owner AND state = 'running';

-- events_after --
-- The job's snapshots after a sequence number, in order
SELECT sequence, time, snapshot FROM job_events WHERE job_id = :job_id AND sequence > :after ORDER BY sequence;

-- count_jobs --
-- How many jobs the list has (a NULL filter lets every job through)
SELECT COUNT(*) AS count FROM jobs
WHERE (CAST(:principal AS TEXT) IS NULL OR principal = :principal)
    AND (CAST(:state AS TEXT) IS NULL OR state = :state)
    AND (CAST(:job_type AS TEXT) IS NULL OR type = :job_type);

-- list_jobs --
-- A page of the list, newest first: after the position (created_at, id) when it is not NULL, then skip
SELECT id, type, request, timeout_s, state, progress, message, request_id, created_at, started_at, ended_at,
       error_code, error_message, from_block, to_block, stats, checkpoint, cancel_requested, attempts, version,
       principal
FROM jobs
WHERE (CAST(:principal AS TEXT) IS NULL OR principal = :principal)
    AND (CAST(:state AS TEXT) IS NULL OR state = :state)
    AND (CAST(:job_type AS TEXT) IS NULL OR type = :job_type)
    AND (CAST(:after_created_at AS DOUBLE PRECISION) IS NULL OR created_at < :after_created_at
         OR (created_at = :after_created_at AND id < :after_id))
ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :skip;

-- delete_job --
-- Removes a job with its events, touches, records and result (ON DELETE CASCADE)
DELETE FROM jobs WHERE id = :job_id;

-- purge_finished_jobs --
-- Removes the jobs that ended before a time
DELETE FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') AND ended_at < :ended_before;

-- forget_request_ids --
-- Forgets the idempotency keys made before a time
DELETE FROM request_ids WHERE created_at < :created_before;

-- count_by_state --
-- How many jobs are in each state that has any
SELECT state, COUNT(*) AS count FROM jobs GROUP BY state;

-- last_completed_id --
-- The most recently completed job of a type that a principal started (any job when principal is NULL)
SELECT id FROM jobs
WHERE type = :job_type AND state = 'completed' AND (CAST(:principal AS TEXT) IS NULL OR principal = :principal)
ORDER BY ended_at DESC LIMIT 1;

-- window --
-- The hashes of a job's reorg window, lowest block first
SELECT block, hash FROM job_blocks WHERE job_id = :job_id ORDER BY block;

-- forget_window --
-- Drops a job's window (it is written again whole, or the job ended without a result)
DELETE FROM job_blocks WHERE job_id = :job_id;

-- forget_window_from --
-- Drops the window's hashes at or after a block (the chain changed there)
DELETE FROM job_blocks WHERE job_id = :job_id AND block >= :from_block;

-- save_window_block --
-- The hash of one block of a job's window
INSERT INTO job_blocks (job_id, block, hash) VALUES (:job_id, :block, :hash)
ON CONFLICT (job_id, block) DO UPDATE SET hash = excluded.hash;

-- kept_touches --
-- The ids of one kind a job (with what it inherited) touched at or after a block, as its result keeps them
SELECT DISTINCT entity_id FROM touched WHERE job_id = :job_id AND kind = :kind AND block >= :since;

-- forget_touched_below --
-- Drops a completed job's touches below its window (its result keeps only the window's)
DELETE FROM touched WHERE job_id = :job_id AND block < :window_from;

-- inherit_touched --
-- Copies the touches of the job a sync continued from, in blocks the sync did not scan itself
INSERT INTO touched (job_id, kind, entity_id, block, events, created)
SELECT :job_id, kind, entity_id, block, events, created FROM touched
WHERE job_id = :after AND block >= :from_block AND block <= :to_block
ON CONFLICT (job_id, kind, entity_id, block) DO NOTHING;

-- result_summary --
-- A completed job's result summary
SELECT summary FROM results WHERE job_id = :job_id;

-- records_from_offset --
-- The first page of a kind's records, from an offset in the result's order
SELECT position, data FROM records WHERE job_id = :job_id AND kind = :kind
ORDER BY position LIMIT :limit OFFSET :offset;

-- records_after_position --
-- The next page of a kind's records, after the last position read
SELECT position, data FROM records WHERE job_id = :job_id AND kind = :kind AND position > :after
ORDER BY position LIMIT :limit;

-- replace_record --
-- Rewrites a record already saved (same id, same position)
UPDATE records SET data = :data WHERE job_id = :job_id AND kind = :kind AND entity_id = :entity_id;

-- cache_content --
-- Keeps verified content under its CID (a CID already cached keeps its content)
INSERT INTO ipfs_content (cid, content, fetched_at) VALUES (:cid, :content, :fetched_at) ON CONFLICT (cid) DO NOTHING;

-- create_schema_version --
-- The table of applied migrations, on a new store
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

-- schema_version --
-- The highest migration applied (0 on a new store)
SELECT COALESCE(MAX(version), 0) AS version FROM schema_version;

-- record_schema_version --
-- Records a migration as applied
INSERT INTO schema_version (version) VALUES (:version);
