"""The job store: jobs, their events, checkpoints and results, and the IPFS content cache, on SQLite or PostgreSQL.

``JobStore(connector)`` is what the servicer and the runner use; the connector
(``SQLiteConnector`` for one server, ``postgres.PostgresConnector`` for
replicas, imported from its module only where PostgreSQL is used, as it loads
psycopg) runs its named queries (sql/) and applies the schema migrations
(migrations/). ``ContentCache(connector)`` is the IPFS content cache.
"""

from server.jobs.store.content_cache import ContentCache
from server.jobs.store.job_store import Change, JobStore
from server.jobs.store.models import JobPage, JobPosition, JobRecord, ResultSummary
from server.jobs.store.sqlite import SQLiteConnector, StoreInUse, open_single_server

__all__ = [
    "Change",
    "ContentCache",
    "JobPage",
    "JobPosition",
    "JobRecord",
    "JobStore",
    "ResultSummary",
    "SQLiteConnector",
    "StoreInUse",
    "open_single_server",
]
