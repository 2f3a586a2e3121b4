"""chainsync server: the gRPC JobService, its job store, runner and sync engine.

Modules, one concern each:

- ``config``    settings from flags, environment and defaults
- ``errors``    the error type every layer raises, and its gRPC status
- ``rpc``       the JSON-RPC transport to the EVM node (batching, retries)
- ``contracts`` what the sync knows of the platform's contracts (ABIs, topics)
- ``sync``      the sync engine: range rules, log scan, getter reads
- ``store``     the job store (jobs/store/): one JobStore on a SQLite or PostgreSQL connector
- ``runner``    the thread pool that claims jobs, leases and heartbeats
- ``jobs``      what running one sync job means (range, engine, finish)
- ``servicer``  the gRPC JobService (grpc.aio)
- ``watch``     fan-out of job events to WatchJob streams
- ``interceptors`` bearer-token auth and errors as rich gRPC statuses
- ``serve``     wiring: builds the store, runner and gRPC server
- ``cli``       the ``chainsync`` command
- ``logs``      log format (JSON lines or text), job and request ids on every line, secrets masked
"""
