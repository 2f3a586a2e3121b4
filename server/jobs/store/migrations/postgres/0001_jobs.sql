-- 1: the first schema (SQLite's migration 1, in PostgreSQL types; seq is SQLite's rowid: claim order
-- among jobs created in the same instant; ids in the "C" collation: byte order, as SQLite compares them)
CREATE TABLE jobs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    seq              BIGINT GENERATED ALWAYS AS IDENTITY,
    type             TEXT NOT NULL,
    state            TEXT NOT NULL,
    progress         INTEGER NOT NULL DEFAULT 0,
    message          TEXT NOT NULL DEFAULT '',
    request          TEXT NOT NULL,
    request_id       TEXT,
    timeout_s        INTEGER NOT NULL,
    created_at       DOUBLE PRECISION NOT NULL,
    started_at       DOUBLE PRECISION,
    ended_at         DOUBLE PRECISION,
    error_code       TEXT,
    error_message    TEXT,
    from_block       BIGINT,
    to_block         BIGINT,
    stats            TEXT NOT NULL DEFAULT '{}',
    checkpoint       TEXT NOT NULL DEFAULT '{}',
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    attempts         INTEGER NOT NULL DEFAULT 0,
    owner            TEXT,
    lease_expires    DOUBLE PRECISION,
    version          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_claim ON jobs (created_at, seq) WHERE state IN ('pending', 'running');
CREATE INDEX jobs_ended ON jobs (ended_at);
CREATE INDEX jobs_listing ON jobs (created_at DESC, id DESC);
CREATE TABLE job_events (
    job_id   TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sequence INTEGER NOT NULL,
    time     DOUBLE PRECISION NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (job_id, sequence)
);
CREATE TABLE touched (
    job_id    TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    block     BIGINT NOT NULL,
    log_index INTEGER NOT NULL,
    created   TEXT COLLATE "C",
    PRIMARY KEY (job_id, kind, entity_id, block, log_index)
);
CREATE TABLE records (
    job_id    TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (job_id, kind, entity_id)
);
CREATE INDEX records_order ON records (job_id, kind, position);
CREATE TABLE results (
    job_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    summary TEXT NOT NULL
);
CREATE TABLE request_ids (
    request_id TEXT PRIMARY KEY,
    job_id     TEXT COLLATE "C" NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
