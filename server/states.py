"""Job states and job types: their names (store, JSON, logs) and their protobuf enums, defined once.

The servicer and the bridge both translate with the maps below; the names are
the spec's (lower case), the enums ``JOB_STATE_<NAME>`` / ``JOB_TYPE_<NAME>``
of proto/chainsync/v1/jobs.proto. Job types come from server/kinds.py.
"""

from __future__ import annotations

from chainsync.v1 import jobs_pb2

from server.kinds import ALL_KINDS_JOB, JOB_TYPES

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = "pending", "running", "completed", "failed", "cancelled"
STATES: tuple[str, ...] = (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED)
TERMINAL: frozenset[str] = frozenset({COMPLETED, FAILED, CANCELLED})  # a job in one never changes again

STATE_ENUM: dict[str, int] = {name: jobs_pb2.JobState.Value(f"JOB_STATE_{name.upper()}") for name in STATES}
STATE_NAME: dict[int, str] = {enum: name for name, enum in STATE_ENUM.items()}
TERMINAL_ENUMS: frozenset[int] = frozenset(STATE_ENUM[name] for name in TERMINAL)

JOB_TYPE_NAMES: tuple[str, ...] = tuple(JOB_TYPES)
TYPE_ENUM: dict[str, int] = {name: jobs_pb2.JobType.Value(f"JOB_TYPE_{name.upper()}") for name in JOB_TYPES}
# UNSPECIFIED in a request means the default type.
TYPE_NAME: dict[int, str] = {jobs_pb2.JOB_TYPE_UNSPECIFIED: ALL_KINDS_JOB} | {e: n for n, e in TYPE_ENUM.items()}
