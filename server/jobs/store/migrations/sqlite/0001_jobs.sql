-- 1: the first schema
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    type             TEXT NOT NULL,
    state            TEXT NOT NULL,
    progress         INTEGER NOT NULL DEFAULT 0,
    message          TEXT NOT NULL DEFAULT '',
    request          TEXT NOT NULL,
    request_id       TEXT,
    timeout_s        INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    started_at       REAL,
    ended_at         REAL,
    error_code       TEXT,
    error_message    TEXT,
    from_block       INTEGER,
    to_block         INTEGER,
    stats            TEXT NOT NULL DEFAULT '{}',
    checkpoint       TEXT NOT NULL DEFAULT '{}',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    owner            TEXT,
    lease_expires    REAL,
    version          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_claim ON jobs (state, created_at);
CREATE INDEX jobs_ended ON jobs (ended_at);
CREATE INDEX jobs_listing ON jobs (created_at DESC, id DESC);
CREATE TABLE job_events (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sequence INTEGER NOT NULL,
    time     REAL NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (job_id, sequence)
);
CREATE TABLE touched (
    job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    block     INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    created   TEXT,
    PRIMARY KEY (job_id, kind, entity_id, block, log_index)
);
CREATE TABLE records (
    job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (job_id, kind, entity_id)
);
CREATE INDEX records_order ON records (job_id, kind, position);
CREATE TABLE results (
    job_id  TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    summary TEXT NOT NULL
);
CREATE TABLE request_ids (
    request_id TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL,
    created_at REAL NOT NULL
);
