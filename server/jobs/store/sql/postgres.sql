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

-- save_touched --
-- The entities a chunk of the scan touched, one JSON array of [kind, id, block, events, created provenance or
-- null] (one statement for the chunk: the database unpacks it, not a Python loop); a block saved again replaces
INSERT INTO touched (job_id, kind, entity_id, block, events, created)
SELECT :job_id, t ->> 0, CAST(t ->> 1 AS BIGINT), CAST(t ->> 2 AS BIGINT), CAST(t ->> 3 AS INTEGER),
       CASE WHEN json_typeof(t -> 4) = 'null' THEN NULL ELSE CAST(t -> 4 AS TEXT) END
FROM json_array_elements(CAST(:rows AS JSON)) AS t
ON CONFLICT (job_id, kind, entity_id, block) DO UPDATE SET events = excluded.events, created = excluded.created;

-- save_records --
-- A page of records of one kind, one JSON array of record objects, at positions from :start in its order
-- (a record saved again moves to its new position)
INSERT INTO records (job_id, kind, entity_id, position, data)
SELECT :job_id, :kind, r ->> 'id', CAST(:start AS INTEGER) + CAST(n AS INTEGER) - 1, CAST(r AS TEXT)
FROM json_array_elements(CAST(:rows AS JSON)) WITH ORDINALITY AS e (r, n)
ON CONFLICT (job_id, kind, entity_id) DO UPDATE SET position = excluded.position, data = excluded.data;

-- announce --
-- Tells the servers that LISTEN on the store's channel what changed, when the transaction commits
SELECT pg_notify(:channel, :payload);

-- job_versions --
-- The version of each job of a JSON array of ids that exists
SELECT id, version FROM jobs WHERE id IN (SELECT json_array_elements_text(CAST(:ids AS JSON)));
