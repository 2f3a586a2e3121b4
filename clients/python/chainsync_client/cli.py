"""``chainsync sync`` and ``chainsync jobs``: the command-line client (server/cli.py hands these two over).

    chainsync sync --blocks-back 1000 --watch      start a job, show a live progress bar, print a summary
    chainsync sync --full --watch --json           the same, the summary as JSON
    chainsync sync --after JOB_ID --watch          an incremental sync, continuing from that job's result
    chainsync jobs list [--status running]         jobs, newest first
    chainsync jobs show|cancel|delete|result ID

Talks gRPC to CHAINSYNC_GRPC_ADDR (``--grpc-addr``) by default, or the REST
bridge with ``--rest-url``; CHAINSYNC_API_TOKEN (``--token``) is sent as a
bearer token. Exit codes: 0 done (the job completed), 1 the job failed or the
request was refused, 2 the job was cancelled, 3 the service is unreachable,
the token is refused, or the command line is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from chainsync_client._base import JOB_STATES, JOB_TYPES, Client
from chainsync_client.errors import ChainsyncError, JobCancelled, ServiceUnavailable, Unauthenticated
from chainsync_client.grpc_client import GrpcClient
from chainsync_client.models import RECORD_KINDS, Job, json_time
from chainsync_client.rest_client import RestClient

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_USAGE = EXIT_UNREACHABLE
EXIT_BY_STATUS = {"completed": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that exits 3 on a usage error (2 means "cancelled" here)."""

    def error(self, message: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# --- rendering ----------------------------------------------------------------


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress_line(job: Job, width: int = 24, fancy: bool = True) -> str:
    """``running  [████████░░░░]  52%  blocks 1,200/2,349  records 0/360  4,373 blk/s  ETA 0:03``"""
    filled = round(width * job.progress / 100)
    full, empty = ("█", "░") if fancy else ("#", "-")
    parts = [f"{job.status:<9}", f"[{full * filled}{empty * (width - filled)}]", f"{job.progress:3d}%"]
    s = job.stats
    if s.blocks_total:
        parts.append(f"blocks {s.blocks_done:,}/{s.blocks_total:,}")
    if s.records_total:
        parts.append(f"records {s.records_done:,}/{s.records_total:,}")
    if s.blocks_per_second:
        parts.append(f"{s.blocks_per_second:,.0f} blk/s")
    if s.eta_seconds and not job.done:
        parts.append(f"ETA {duration(s.eta_seconds)}")
    return "  ".join(parts)


def table(rows: list[tuple[str, str]], out: TextIO) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key:<{width}}  {value}\n")


def job_rows(job: Job, totals: dict[str, int] | None = None) -> list[tuple[str, str]]:
    rows = [
        ("job", job.id),
        ("type", job.type),
        ("status", job.status),
        ("progress", f"{job.progress}%"),
        ("message", job.message),
    ]
    if job.to_block is not None:
        rows.append(("blocks", f"{job.from_block:,}..{job.to_block:,} ({job.stats.blocks_total:,} blocks)"))
    if totals is not None:
        rows.append(("records", ", ".join(f"{totals.get(k, 0):,} {k}" for k in RECORD_KINDS)))
    elif job.stats.records_total:
        rows.append(("records", f"{job.stats.records_done:,}/{job.stats.records_total:,}"))
    if job.stats.events_found:
        rows.append(("events", f"{job.stats.events_found:,}"))
    if job.stats.reorgs:
        rows.append(("reorgs", f"{job.stats.reorgs:,} (synced again from the fork)"))
    rows.append(("created", job.created_at.isoformat()))
    if job.started_at and job.ended_at:
        elapsed = (job.ended_at - job.started_at).total_seconds()
        rate = f" ({job.stats.blocks_total / elapsed:,.0f} blocks/s)" if elapsed > 0 and job.stats.blocks_total else ""
        rows.append(("time", f"{elapsed:.2f} s{rate}"))
    if job.error_code:
        rows.append(("error", f"{job.error_code}: {job.error}"))
    return rows


def print_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2) + "\n")


# --- commands -----------------------------------------------------------------


def follow(client: Client, job: Job, timeout: float, err: TextIO, show_bar: bool) -> Job:
    """Shows the progress from the watch stream until the job ends; returns its last state."""
    tty = err.isatty()
    fancy = (getattr(err, "encoding", "") or "").lower().replace("-", "") == "utf8"
    last_line = ""
    for event in client.watch(job.id, timeout=timeout):
        job = event.job
        if show_bar:
            line = progress_line(job, fancy=fancy)
            if tty:
                err.write(f"\r{line}\x1b[K")
                err.flush()
            elif line != last_line:
                err.write(line + "\n")
            last_line = line
    if show_bar and tty:
        err.write("\n")
    return job


def cmd_sync(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if (args.from_block is None) != (args.to_block is None):
        raise UsageError("--from-block and --to-block go together")
    job = client.start_sync(
        blocks_back=args.blocks_back,
        full=args.full,
        type=args.type,
        request_id=args.request_id,
        from_block=args.from_block,
        to_block=args.to_block,
        timeout_seconds=args.job_timeout,
        incremental=args.incremental,
        after=args.after,
    )
    if not args.watch:
        if args.json:
            print_json(job.to_json(), out)
        else:
            out.write(f"started job {job.id} ({job.status})\nfollow it with: chainsync jobs show {job.id}\n")
        return EXIT_OK
    if not args.json:
        err.write(f"job {job.id}\n")
    try:
        job = follow(client, job, args.wait_timeout, err, show_bar=not args.json or err.isatty())
    except KeyboardInterrupt:
        err.write(f"\nstopped watching; the job goes on: chainsync jobs show {job.id}\n")
        return 130
    totals = client.result(job.id, page_size=1).totals if job.status == "completed" else None
    if args.json:
        print_json({"job": job.to_json(), **({"totals": totals} if totals is not None else {})}, out)
    else:
        table(job_rows(job, totals), out)
    return EXIT_BY_STATUS.get(job.status, EXIT_FAILED)


def cmd_list(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    page = client.list_jobs(
        status=args.status, type=args.type, page_size=args.limit, page=args.page, page_token=args.page_token
    )
    if args.json:
        print_json(
            {"jobs": [j.to_json() for j in page.jobs], "total": page.total, "nextPageToken": page.next_page_token}, out
        )
        return EXIT_OK
    rows = [("ID", "STATUS", "TYPE", "PROGRESS", "BLOCKS", "CREATED")]
    for j in page.jobs:
        blocks = f"{j.from_block}..{j.to_block}" if j.to_block is not None else "-"
        rows.append((j.id, j.status, j.type, f"{j.progress}%", blocks, j.created_at.strftime("%Y-%m-%d %H:%M:%S")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    shown = f"{len(page.jobs)} of {page.total} jobs"
    more = f"; next page: --page-token {page.next_page_token}" if page.next_page_token else ""
    out.write(f"{shown}{more}\n")
    return EXIT_OK


def cmd_show(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    job = client.cancel(args.job_id) if args.jobs_command == "cancel" else client.status(args.job_id)
    if args.json:
        print_json(job.to_json(), out)
    else:
        table(job_rows(job), out)
    return EXIT_OK


def cmd_delete(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    client.delete(args.job_id)
    out.write(f"deleted job {args.job_id}\n")
    return EXIT_OK


def cmd_result(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.ndjson:
        for kind, record in client.iter_records(args.job_id, page_size=args.page_size):
            out.write(json.dumps({"kind": kind, **record}) + "\n")
        return EXIT_OK
    result = client.result(args.job_id)
    cursor, reorg = result.cursor, result.reorg
    print_json(
        {
            "jobId": result.job_id,
            "fromBlock": result.from_block,
            "toBlock": result.to_block,
            "toBlockHash": result.to_block_hash,
            "chainId": result.chain_id,
            "eventsCount": result.events_count,
            "processingTime": result.processing_time_ms,
            "completedAt": json_time(result.completed_at),
            "cursor": {"jobId": cursor.job_id, "toBlock": cursor.to_block, "toBlockHash": cursor.to_block_hash},
            "after": result.after,
            "reorg": {"forkBlock": reorg.fork_block, "droppedBlocks": reorg.dropped_blocks} if reorg else None,
            "dropped": result.dropped,
            **{kind: getattr(result, kind) for kind in RECORD_KINDS},
        },
        out,
    )
    return EXIT_OK


def build_parser() -> Parser:
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--grpc-addr", help="gRPC server host:port (CHAINSYNC_GRPC_ADDR, default 127.0.0.1:50051)")
    conn.add_argument("--rest-url", help="talk to the REST bridge at this URL instead of gRPC")
    conn.add_argument("--token", help="bearer token (CHAINSYNC_API_TOKEN)")
    conn.add_argument("--json", action="store_true", help="print JSON instead of tables")

    parser = Parser(prog="chainsync", description="The chainsync command-line client.", parents=[])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser(
        "sync",
        parents=[conn],
        help="start a sync job (and follow it with --watch)",
        description="Start a sync job. With --watch, show its progress and exit 0 completed, "
        "1 failed, 2 cancelled, 3 unreachable.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--blocks-back", type=int, metavar="N", help="the last N blocks (the server's default: 1000)")
    what.add_argument("--full", action="store_true", help="from the earliest deployment block")
    what.add_argument("--from-block", type=int, metavar="A", help="an explicit range, with --to-block")
    what.add_argument("--incremental", action="store_true", help="continue from the last completed sync of this type")
    what.add_argument(
        "--after",
        metavar="JOB_ID",
        help="continue from this job, the one whose result you applied last (an incremental sync; docs/reorgs.md)",
    )
    p.add_argument("--to-block", type=int, metavar="B")
    p.add_argument("--type", choices=JOB_TYPES, default="blockchain_sync")
    p.add_argument("--request-id", help="idempotency key: the same key within 24 h returns the first job")
    p.add_argument("--job-timeout", type=int, metavar="S", help="the job's timeout in seconds (server default 900)")
    p.add_argument("--watch", action="store_true", help="show a live progress bar, then a summary")
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="with --watch: give up watching after S seconds (default 600; the job goes on)",
    )
    p.set_defaults(func=cmd_sync)

    jobs = sub.add_parser("jobs", help="list, show, cancel, delete jobs and fetch results")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, parser_class=Parser)
    p = jobs_sub.add_parser("list", parents=[conn], help="jobs, newest first")
    p.add_argument("--status", choices=JOB_STATES)
    p.add_argument("--type", choices=JOB_TYPES)
    p.add_argument("--limit", type=int, default=20, help="jobs per page (1..100)")
    p.add_argument("--page", type=int, help="page number, from 1")
    p.add_argument("--page-token", help="the token a previous page printed")
    p.set_defaults(func=cmd_list)
    for name, text, func in [
        ("show", "a job's status", cmd_show),
        ("cancel", "cancel a job", cmd_show),
        ("delete", "delete a job and its result", cmd_delete),
    ]:
        p = jobs_sub.add_parser(name, parents=[conn], help=text)
        p.add_argument("job_id", metavar="JOB_ID")
        p.set_defaults(func=func)
    p = jobs_sub.add_parser("result", parents=[conn], help="a completed job's records, as JSON")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--ndjson", action="store_true", help="one record per line, streamed page by page")
    p.add_argument("--page-size", type=int, default=500, help="with --ndjson: records of each kind per page")
    p.set_defaults(func=cmd_result)
    return parser


def make_client(args: argparse.Namespace) -> Client:
    token = args.token or os.environ.get("CHAINSYNC_API_TOKEN") or None
    if args.rest_url:
        return RestClient(args.rest_url, token=token)
    return GrpcClient(args.grpc_addr or os.environ.get("CHAINSYNC_GRPC_ADDR") or "127.0.0.1:50051", token=token)


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        with make_client(args) as client:
            return args.func(client, args, out, err)
    except UsageError as exc:
        err.write(f"chainsync: error: {exc}\n")
        return EXIT_USAGE
    except ChainsyncError as exc:
        err.write(f"chainsync: {exc.message} ({exc.code})\n")
        if isinstance(exc, (ServiceUnavailable, Unauthenticated)):
            return EXIT_UNREACHABLE
        return EXIT_CANCELLED if isinstance(exc, JobCancelled) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
