"""The ``chainsync`` command: one subcommand per piece of the diagram.

    chainsync devnet   anvil on 127.0.0.1:8545 with the contracts deployed and seeded
    chainsync serve    the gRPC JobService on 127.0.0.1:50051
    chainsync bridge   the REST bridge on 127.0.0.1:8080
    chainsync up       all three in the foreground (what `make run` runs)
    chainsync backup   copy the SQLite job store while servers run
    chainsync sync     start a sync job (--watch: live progress); chainsync jobs list|show|cancel|delete|result

Settings come from flags, then CHAINSYNC_* environment variables, then defaults.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from server.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        rpc_urls=tuple(args.rpc_url.split(",")) if getattr(args, "rpc_url", None) else None,
        deployment_path=getattr(args, "deployment", None),
        db=getattr(args, "db", None),
        grpc_addr=getattr(args, "grpc_addr", None),
        http_addr=getattr(args, "http_addr", None),
        workers=getattr(args, "workers", None),
        confirmations=getattr(args, "confirmations", None),
        ipfs_gateways=tuple(args.ipfs_gateway.split(",")) if getattr(args, "ipfs_gateway", None) else None,
        metrics_addr=getattr(args, "metrics_addr", None),
        log_format=getattr(args, "log_format", None),
    )


def cmd_devnet(args: argparse.Namespace) -> int:
    from devnet.command import run_devnet

    return run_devnet(host="127.0.0.1", port=args.port, workdir=Path(args.workdir), scale=args.scale, fresh=args.fresh)


def cmd_serve(args: argparse.Namespace) -> int:
    from server.service.serve import run

    run(_settings(args))
    return 0


def cmd_bridge(args: argparse.Namespace) -> int:
    from rest_bridge.app import run

    run(_settings(args))
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from server.jobs.backup import BackupError, backup_sqlite

    db = _settings(args).db

    def progress(done: int, total: int) -> None:
        print(f"\r  {done}/{total} pages", end="", file=sys.stderr, flush=True)

    try:
        report = backup_sqlite(db, args.destination, progress=progress if sys.stderr.isatty() else None)
    except BackupError as exc:
        print(f"chainsync backup: {exc}", file=sys.stderr)
        return 1
    print(
        f"backed up {db} to {report.path}: {report.jobs} jobs, schema version {report.schema_version}, "
        f"{report.size_bytes / 1e6:.1f} MB",
        flush=True,
    )
    return 0


def _wait_for_port(addr: str, proc: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    import socket

    host, port = addr.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on {addr} within {timeout_s:.0f} s")


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    exe = [sys.executable, "-m", "server.cli"]
    procs: list[tuple[str, subprocess.Popen]] = []

    def stop_all() -> None:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _name, proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        rpc = settings.rpc_urls[0]
        devnet_addr = rpc.split("://", 1)[1].rstrip("/")
        procs.append(("devnet", subprocess.Popen([*exe, "devnet", "--port", devnet_addr.rsplit(":", 1)[1]])))
        _wait_for_port(devnet_addr, procs[-1][1], "the devnet", timeout_s=600)
        deployment = Path(settings.deployment_path)
        deadline = time.monotonic() + 600
        while not deployment.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        procs.append(("server", subprocess.Popen([*exe, "serve"])))
        _wait_for_port(settings.grpc_addr, procs[-1][1], "the gRPC server")
        procs.append(("bridge", subprocess.Popen([*exe, "bridge"])))
        _wait_for_port(settings.http_addr, procs[-1][1], "the REST bridge")
        base = f"http://{settings.http_addr}"
        print(
            "\nchainsync is up:\n"
            f"  devnet (JSON-RPC)  {rpc}\n"
            f"  gRPC JobService    {settings.grpc_addr}\n"
            f"  REST bridge        {base}   (OpenAPI docs: {base}/docs)\n"
            f"  jobs page          {base}/\n"
            f"  metrics            {base}/metrics (bridge)"
            + (f", http://{settings.metrics_addr}/metrics (server)" if settings.metrics_addr != "off" else "")
            + "\n\n"
            "Try:\n"
            f"  curl -s -X POST {base}/api/blockchain/sync -H 'Content-Type: application/json' "
            "-d '{\"isFullSync\": true}'\n"
            f"then open the statusUrl and resultUrl it returns under {base}.\n"
            "Ctrl-C stops all three.\n",
            flush=True,
        )
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        dead = [name for name, p in procs if p.poll() is not None]
        print(f"{', '.join(dead)} stopped; stopping the rest", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    finally:
        stop_all()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chainsync", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rpc-url", help="EVM JSON-RPC URL(s), comma-separated (CHAINSYNC_RPC_URL)")
        p.add_argument("--deployment", help="deployment file (CHAINSYNC_DEPLOYMENT)")
        p.add_argument("--db", help="SQLite path or postgresql:// URL (CHAINSYNC_DB)")
        p.add_argument("--grpc-addr", help="gRPC listen/target address (CHAINSYNC_GRPC_ADDR)")
        p.add_argument("--http-addr", help="REST bridge address (CHAINSYNC_HTTP_ADDR)")
        p.add_argument("--workers", type=int, help="job threads (CHAINSYNC_WORKERS)")
        p.add_argument("--confirmations", type=int, help="blocks to stay behind the head (CHAINSYNC_CONFIRMATIONS)")
        p.add_argument(
            "--ipfs-gateway",
            help="IPFS HTTP gateway URL(s) for the *Cid fields, comma-separated (CHAINSYNC_IPFS_GATEWAY)",
        )
        p.add_argument(
            "--log-format", choices=["auto", "json", "text"], help="log lines on stderr (CHAINSYNC_LOG_FORMAT)"
        )

    p = sub.add_parser("devnet", help="start anvil with the contracts deployed and seeded")
    p.add_argument("--port", type=int, default=8545)
    p.add_argument("--workdir", default=".devnet", help="where state and the deployment file live")
    p.add_argument("--scale", default="demo", choices=["demo", "bench", "memory"])
    p.add_argument("--fresh", action="store_true", help="rebuild the chain instead of loading the saved state")
    p.set_defaults(func=cmd_devnet)

    for name, func, text in [
        ("serve", cmd_serve, "run the gRPC JobService"),
        ("bridge", cmd_bridge, "run the REST bridge"),
        ("up", cmd_up, "devnet, server and bridge in the foreground"),
    ]:
        p = sub.add_parser(name, help=text)
        common(p)
        if name == "serve":
            p.add_argument("--metrics-addr", help="Prometheus /metrics host:port, or off (CHAINSYNC_METRICS_ADDR)")
        p.set_defaults(func=func)
    p = sub.add_parser("backup", help="copy the SQLite job store while servers run (safe, unlike cp)")
    p.add_argument("--db", help="the SQLite job store (CHAINSYNC_DB)")
    p.add_argument("destination", help="a new file to write the copy to")
    p.set_defaults(func=cmd_backup)
    # The client commands have their own parser (clients/python/chainsync_client/cli.py); main() hands them over.
    sub.add_parser("sync", help="start a sync job and follow its progress (chainsync sync --help)", add_help=False)
    sub.add_parser(
        "jobs", help="list, show, cancel, delete jobs, fetch results (chainsync jobs --help)", add_help=False
    )
    return parser


CLIENT_COMMANDS = ("sync", "jobs")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in CLIENT_COMMANDS:
        from chainsync_client.cli import main as client_main

        return client_main(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
