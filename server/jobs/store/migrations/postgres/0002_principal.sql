-- 2: jobs remember the API token that started them (several tokens: each sees its own jobs)
ALTER TABLE jobs ADD COLUMN principal TEXT;
CREATE INDEX jobs_by_principal ON jobs (principal, created_at);
