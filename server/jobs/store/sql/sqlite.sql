-- The job store's queries as SQLite runs them, where PostgreSQL's differ (postgres.sql), and SQLite's own.
-- A SQLite file has one writer at a time (BEGIN IMMEDIATE): a transaction needs no row locks.

-- claimable_job --
-- The oldest pending job, or a running one whose lease ran out (rowid: creation order within an instant)
SELECT id FROM jobs WHERE state = 'pending' OR (state = 'running' AND lease_expires < :now)
ORDER BY created_at, rowid LIMIT 1;

-- job_for_update --
-- The job request_cancel decides on (the write transaction already excludes other writers)
SELECT id, type, request, timeout_s, state, progress, message, request_id, created_at, started_at, ended_at,
       error_code, error_message, from_block, to_block, stats, checkpoint, cancel_requested, attempts, version,
       principal
FROM jobs WHERE id = :job_id;

-- job_holder_for_update --
-- The state and lease holder of a job about to be written to
SELECT state, owner FROM jobs WHERE id = :job_id;

-- update_progress --
-- A running job's progress (never lower), message and stats (only owner's, when owner is not NULL)
UPDATE jobs SET progress = MAX(progress, :progress), message = :message, stats = :stats,
    from_block = COALESCE(:from_block, from_block), to_block = COALESCE(:to_block, to_block),
    version = version + 1
WHERE id = :job_id AND state = 'running' AND (CAST(:owner AS TEXT) IS NULL OR owner = :owner);

-- cached_contents --
-- The cached content of the CIDs of a JSON array
SELECT cid, content FROM ipfs_content WHERE cid IN (SELECT value FROM json_each(:cids));

-- release_orphans --
-- Makes every running job claimable now (one server per file: at its start, they belong to a dead process)
UPDATE jobs SET lease_expires = 0 WHERE state = 'running';

-- save_touched --
-- The entities a chunk of the scan touched, one JSON array of [kind, id, block, events, created provenance or
-- null] (one statement for the chunk: the database unpacks it, not a Python loop); a block saved again replaces
INSERT INTO touched (job_id, kind, entity_id, block, events, created)
SELECT :job_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]')
FROM json_each(:rows) WHERE TRUE
ON CONFLICT (job_id, kind, entity_id, block) DO UPDATE SET events = excluded.events, created = excluded.created;

-- save_records --
-- A page of records of one kind, one JSON array of record objects, at positions from :start in its order
-- (a record saved again moves to its new position)
INSERT INTO records (job_id, kind, entity_id, position, data)
SELECT :job_id, :kind, json_extract(value, '$.id'), :start + key, value FROM json_each(:rows) WHERE TRUE
ON CONFLICT (job_id, kind, entity_id) DO UPDATE SET position = excluded.position, data = excluded.data;

-- job_versions --
-- The version of each job of a JSON array of ids that exists
SELECT id, version FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));
