"""The contract: the proto defines the whole JobService, and gen/ is not stale."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

from chainsync.v1 import jobs_pb2
from google.api import annotations_pb2

REPO = Path(__file__).resolve().parent.parent


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(REPO / "proto" / "generate.py"), str(tmp_path)], check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert fresh, "generate.py produced nothing"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, REPO / "gen" / p, shallow=False)]
    assert not stale, f"gen/ is stale, run `make proto`: {stale}"


def test_job_service_has_every_rpc_with_its_rest_mapping() -> None:
    service = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
    routes = {}
    for method in service.methods:
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        routes[method.name] = (verb, getattr(rule, verb))
    assert routes == {
        "StartSync": ("post", "/api/blockchain/sync"),
        "GetJob": ("get", "/api/blockchain/sync/status/{job_id}"),
        "GetResult": ("get", "/api/blockchain/sync/result/{job_id}"),
        "WatchJob": ("get", "/api/blockchain/sync/events/{job_id}"),
        "ListJobs": ("get", "/jobs"),
        "CancelJob": ("post", "/jobs/{job_id}:cancel"),
        "DeleteJob": ("delete", "/jobs/{job_id}"),
    }
    assert service.methods_by_name["WatchJob"].server_streaming


def test_records_carry_every_getter_field_and_provenance() -> None:
    fields = {
        name: [f.name for f in jobs_pb2.DESCRIPTOR.message_types_by_name[name].fields]
        for name in ("Proposal", "Petition", "Report")
    }
    assert fields["Proposal"] == [
        "id",
        "title_cid",
        "short_description_cid",
        "description_in_details_cid",
        "yes_votes",
        "no_votes",
        "creator",
        "active_status",
        "expired_date",
        "category_id",
        "created_at",
        "updated_at",
        "removed",
        "created",
        "title",  # IPFS content, when resolved (docs/ipfs.md)
        "short_description",
        "description",
        "unresolved",
    ]
    assert fields["Petition"] == [
        "id",
        "title_cid",
        "des_cid",
        "signatures_required",
        "signatures_count",
        "creator",
        "completed",
        "removed",
        "created",
        "title",
        "description",
        "unresolved",
    ]
    assert fields["Report"] == [
        "id",
        "title_cid",
        "description_cid",
        "upvotes",
        "downvotes",
        "creator",
        "resolved",
        "created_at",
        "resolved_at",
        "removed",
        "created",
        "title",
        "description",
        "unresolved",
    ]
