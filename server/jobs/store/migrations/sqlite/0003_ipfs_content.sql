-- 3: IPFS content behind the records' *Cid fields, by CID (content under a CID never changes;
-- server/jobs/ipfs.py)
CREATE TABLE ipfs_content (
    cid        TEXT PRIMARY KEY,
    content    TEXT NOT NULL,
    fetched_at REAL NOT NULL
);
