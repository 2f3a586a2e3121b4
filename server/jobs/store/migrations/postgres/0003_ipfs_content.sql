-- 3: IPFS content behind the records' *Cid fields, by CID (content under a CID never changes;
-- server/jobs/ipfs.py)
CREATE TABLE ipfs_content (
    cid        TEXT COLLATE "C" PRIMARY KEY,
    content    TEXT NOT NULL,
    fetched_at DOUBLE PRECISION NOT NULL
);
