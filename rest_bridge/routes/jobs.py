"""The job management routes under /jobs: list jobs, cancel a job, delete a job (ListJobs, CancelJob, DeleteJob).

Owns the list's paging: ``page`` and ``limit``, or the bridge's own
``pageToken`` (``<page>.<server token>``), which stays stable while new jobs
arrive.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from chainsync.v1 import jobs_pb2
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from rest_bridge import models
from rest_bridge.convert import FastJSON, job_json
from rest_bridge.errors import BadRequest
from rest_bridge.jobservice import UNARY_TIMEOUT_S, metadata_of, status_mirror_of, stub_of
from rest_bridge.models import JobId, is_number
from rest_bridge.openapi import SECURED, error_responses
from server.states import STATE_ENUM, TYPE_ENUM

router = APIRouter(default_response_class=FastJSON)


def list_page(page: int | None, page_token: str | None) -> tuple[int, str]:
    """(page number, server page token) from ``page`` or the bridge's ``pageToken`` (``<page>.<server token>``)."""
    if page_token:
        if page is not None:
            raise BadRequest("page", "page: cannot be combined with pageToken")
        number, _, token = page_token.partition(".")
        if not is_number(number) or int(number) < 2 or not token:
            raise BadRequest("pageToken", "pageToken: not a token this bridge returned")
        return int(number), token
    return page or 1, ""


@router.get(
    "/jobs",
    response_model=models.ListJobsResponse,
    tags=["jobs"],
    openapi_extra=SECURED,
    summary="Jobs, newest first",
    description="Filter by `status` and `type`; page with `page` and `limit`, or follow `nextPageToken` "
    "(passed back as `pageToken`), which stays stable while new jobs arrive.",
    responses=error_responses(),
)
async def list_jobs(
    request: Request,
    status: Annotated[models.JobStatusName | None, Query(description="Only jobs in this state.")] = None,
    type: Annotated[models.JobTypeName | None, Query(description="Only jobs of this type.")] = None,
    page: Annotated[int | None, Query(ge=1, le=1_000_000, description="1-based page number (default 1).")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 20,
    page_token: Annotated[str | None, Query(alias="pageToken", max_length=1024)] = None,
) -> Response:
    number, token = list_page(page, page_token)
    response = await stub_of(request).ListJobs(
        jobs_pb2.ListJobsRequest(
            state=STATE_ENUM[status] if status else 0,
            type=TYPE_ENUM[type] if type else 0,
            page_size=limit,
            page_token=token,
            skip=0 if token else (number - 1) * limit,
        ),
        metadata=metadata_of(request),
        timeout=UNARY_TIMEOUT_S,
    )
    body: dict[str, Any] = {
        "success": True,
        "jobs": [job_json(j) for j in response.jobs],
        "pagination": {
            "page": number,
            "limit": limit,
            "total": response.total_size,
            "totalPages": math.ceil(response.total_size / limit),
        },
    }
    if response.next_page_token:
        body["nextPageToken"] = f"{number + 1}.{response.next_page_token}"
    return FastJSON(body)


@router.post(
    "/jobs/{jobId}:cancel",
    response_model=models.StatusResponse,
    tags=["jobs"],
    openapi_extra=SECURED,
    summary="Cancel a job",
    description="A running job stops within a second or two and ends `cancelled`; a pending one never starts. "
    "Answers with the job as it is now (it may still say `running` for a moment). Any body is ignored.",
    responses=error_responses(404),
)
async def cancel_job(request: Request, job_id: JobId) -> Response:
    job = await stub_of(request).CancelJob(
        jobs_pb2.CancelJobRequest(job_id=job_id), metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S
    )
    status_mirror_of(request).forget(job_id)
    return FastJSON({"success": True, "job": job_json(job)})


@router.delete(
    "/jobs/{jobId}",
    response_model=models.DeleteResponse,
    tags=["jobs"],
    openapi_extra=SECURED,
    summary="Delete a job and its result",
    description="A running job is cancelled first; 409 JOB_STILL_RUNNING if it has not stopped within 5 s.",
    responses=error_responses(404, 409),
)
async def delete_job(request: Request, job_id: JobId) -> Response:
    await stub_of(request).DeleteJob(
        jobs_pb2.DeleteJobRequest(job_id=job_id), metadata=metadata_of(request), timeout=UNARY_TIMEOUT_S
    )
    status_mirror_of(request).forget(job_id)
    return FastJSON({"success": True, "jobId": job_id, "message": f"job {job_id} deleted"})
