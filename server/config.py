"""Settings: flags, then environment (CHAINSYNC_*), then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from server.logs import check_settings as check_log_settings

DEFAULT_SSE_PING_S = 15.0
DEFAULT_RPC_CONCURRENCY = 8  # CHAINSYNC_RPC_CONCURRENCY: the endpoint window's cap, and where it starts


def default_db_path() -> str:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "chainsync" / "jobs.sqlite3")


@dataclass(frozen=True)
class Settings:
    rpc_urls: tuple[str, ...] = ("http://127.0.0.1:8545",)
    deployment_path: str = ".devnet/deployment.json"
    db: str = field(default_factory=default_db_path)
    grpc_addr: str = "127.0.0.1:50051"
    http_addr: str = "127.0.0.1:8080"
    api_token: str | None = None
    confirmations: int = 0
    workers: int = field(default_factory=lambda: max(2, min(8, os.cpu_count() or 2)))
    job_timeout_s: int = 15 * 60
    retention_s: int = 24 * 60 * 60
    log_chunk_blocks: int = 2_000
    log_chunk_max: int = 50_000
    silent_changes: str = "auto"
    reorg_window: int = 128  # blocks up to a job's toBlock whose hashes and touches it keeps (docs/reorgs.md)
    rpc_budget_s: int = 30
    rpc_concurrency: int = DEFAULT_RPC_CONCURRENCY  # requests in flight to one node URL at most (the window adapts)
    tls_cert: str | None = None  # PEM files: with both, gRPC is served over TLS only
    tls_key: str | None = None
    lease_s: int = 15
    ipfs_gateways: tuple[str, ...] = ()  # IPFS HTTP gateways for the *Cid fields' content; none: not resolved
    ipfs_concurrency: int = 8  # gateway requests in flight, for the whole server
    ipfs_timeout_s: int = 10  # per gateway request
    metrics_addr: str = "127.0.0.1:9464"  # Prometheus /metrics over HTTP (the gRPC port speaks only gRPC); "off"
    log_format: str = "auto"  # auto (text on a terminal, JSON otherwise), json or text: server/logs.py
    log_level: str = "info"
    # The REST bridge's own (rest_bridge/app.py):
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call it (CORS)
    sse_ping_s: float = DEFAULT_SSE_PING_S  # seconds between pings on an idle event stream
    tls_ca: str | None = None  # PEM file: call the gRPC server over TLS, trusting these certificates
    access_log: bool = False  # one log line per request

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if env.get("CHAINSYNC_RPC_URL"):
            values["rpc_urls"] = tuple(u.strip() for u in env["CHAINSYNC_RPC_URL"].split(",") if u.strip())
        if env.get("CHAINSYNC_IPFS_GATEWAY"):
            values["ipfs_gateways"] = tuple(u.strip() for u in env["CHAINSYNC_IPFS_GATEWAY"].split(",") if u.strip())
        if env.get("CHAINSYNC_CORS_ORIGINS"):
            values["cors_origins"] = tuple(o.strip() for o in env["CHAINSYNC_CORS_ORIGINS"].split(",") if o.strip())
        for key, name in [
            ("deployment_path", "CHAINSYNC_DEPLOYMENT"),
            ("db", "CHAINSYNC_DB"),
            ("grpc_addr", "CHAINSYNC_GRPC_ADDR"),
            ("http_addr", "CHAINSYNC_HTTP_ADDR"),
            ("api_token", "CHAINSYNC_API_TOKEN"),
            ("silent_changes", "CHAINSYNC_SILENT_CHANGES"),
            ("tls_cert", "CHAINSYNC_TLS_CERT"),
            ("tls_key", "CHAINSYNC_TLS_KEY"),
            ("metrics_addr", "CHAINSYNC_METRICS_ADDR"),
            ("log_format", "CHAINSYNC_LOG_FORMAT"),
            ("log_level", "CHAINSYNC_LOG_LEVEL"),
            ("tls_ca", "CHAINSYNC_TLS_CA"),
        ]:
            if env.get(name):
                values[key] = env[name]
        for key, name in [
            ("confirmations", "CHAINSYNC_CONFIRMATIONS"),
            ("workers", "CHAINSYNC_WORKERS"),
            ("job_timeout_s", "CHAINSYNC_JOB_TIMEOUT"),
            ("retention_s", "CHAINSYNC_RETENTION"),
            ("log_chunk_blocks", "CHAINSYNC_LOG_CHUNK"),
            ("log_chunk_max", "CHAINSYNC_LOG_CHUNK_MAX"),
            ("reorg_window", "CHAINSYNC_REORG_WINDOW"),
            ("lease_s", "CHAINSYNC_LEASE_SECONDS"),
            ("rpc_budget_s", "CHAINSYNC_RPC_BUDGET"),
            ("rpc_concurrency", "CHAINSYNC_RPC_CONCURRENCY"),
            ("ipfs_concurrency", "CHAINSYNC_IPFS_CONCURRENCY"),
            ("ipfs_timeout_s", "CHAINSYNC_IPFS_TIMEOUT"),
        ]:
            if env.get(name):
                try:
                    values[key] = int(env[name])
                except ValueError:
                    raise SystemExit(f"{name} must be an integer, got {env[name]!r}") from None
        if env.get("CHAINSYNC_SSE_PING_SECONDS"):
            values["sse_ping_s"] = _seconds(env, "CHAINSYNC_SSE_PING_SECONDS")
        values["access_log"] = _switch(env, "CHAINSYNC_ACCESS_LOG")
        settings = replace(cls(), **values)
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise SystemExit("CHAINSYNC_TLS_CERT and CHAINSYNC_TLS_KEY go together: set both or neither")
        if settings.silent_changes not in ("auto", "trace", "blocks", "off"):
            raise SystemExit("CHAINSYNC_SILENT_CHANGES must be auto, trace, blocks or off")
        if not 1 <= settings.rpc_concurrency <= 256:
            raise SystemExit(f"CHAINSYNC_RPC_CONCURRENCY must be between 1 and 256, got {settings.rpc_concurrency}")
        if not 1 <= settings.reorg_window <= 100_000:
            raise SystemExit(f"CHAINSYNC_REORG_WINDOW must be between 1 and 100000 blocks, got {settings.reorg_window}")
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        check_ipfs_settings(settings)
        log_format, log_level = check_log_settings(settings.log_format, settings.log_level)
        return replace(settings, log_format=log_format, log_level=log_level)


def _seconds(env: Mapping[str, str], name: str) -> float:
    """A number of seconds in (0, 3600]."""
    raw = env[name]
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 3600:
        raise SystemExit(f"{name} must be between 0 and 3600 seconds, got {raw!r}")
    return value


def _switch(env: Mapping[str, str], name: str) -> bool:
    """on or off (also 1/0, true/false, yes/no); unset or empty is off."""
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "off", "no"):
        return False
    if raw in ("1", "true", "on", "yes"):
        return True
    raise SystemExit(f"{name} must be on or off, got {raw!r}")


def check_ipfs_settings(settings: Settings) -> None:
    for url in settings.ipfs_gateways:
        if not url.startswith(("http://", "https://")) or len(url) < 9:
            raise SystemExit(f"CHAINSYNC_IPFS_GATEWAY: {url!r} is not an http:// or https:// URL")
    if settings.ipfs_concurrency < 1:
        raise SystemExit("CHAINSYNC_IPFS_CONCURRENCY must be at least 1")
    if settings.ipfs_timeout_s < 1:
        raise SystemExit("CHAINSYNC_IPFS_TIMEOUT must be at least 1 (seconds)")
