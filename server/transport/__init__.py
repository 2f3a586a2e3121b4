"""Transport: talking JSON-RPC to EVM nodes. Imports nothing above it (engine, jobs, service)."""
