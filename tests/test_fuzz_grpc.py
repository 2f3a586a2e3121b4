"""Bad input through gRPC: hypothesis against every JobService request message.

Arbitrary field values (int64/uint64/uint32/int32 extremes, unknown enum numbers, any
text for ids, request ids and page tokens) go to real servers. Every call must succeed
or fail with INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION carrying a
google.rpc.ErrorInfo reason: never UNKNOWN or INTERNAL, and never hang (each call has a
deadline). Runs are derandomized (the same inputs every run) and bounded.

StartSync, ListJobs, CancelJob and DeleteJob go to a server of this module whose RPC node
never answers (tests.processes.silent_rpc): the jobs the fuzzer starts just wait. GetJob,
GetResult and WatchJob go to the session stack's server, with arbitrary ids and the id of
one completed job (so result pages and event sequences are fuzzed on real data).

The number of generated calls is printed at the end (``fuzz grpc: ...``).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.processes import grpc_server, silent_rpc
from tests.stack import TERMINAL, wait_for_state
from tests.test_api_errors import error_reason

CALL_TIMEOUT_S = 10
ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION}
TRIED: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()
FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,  # a loaded CI machine; CALL_TIMEOUT_S bounds each call instead
    suppress_health_check=list(HealthCheck),
)


def edges(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    named = [low, high, 0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 100_000_000, 100_000_001, 86_400, 10_001]
    return st.one_of(st.sampled_from([n for n in named if low <= n <= high]), st.integers(low, high))


INT32, UINT32, INT64, UINT64 = edges(32, True), edges(32, False), edges(64, True), edges(64, False)
ENUMS = st.one_of(st.integers(0, 6), INT32)  # proto3 enums are open: any int32 travels
TEXT = st.text(max_size=300)


def b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Tokens of every JSON shape and size, including the ones that once reached the store unchecked.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
LIST_TOKENS = st.one_of(TEXT, st.builds(b64, JSON_VALUES), st.builds(b64, st.lists(st.integers(0, 2**40), max_size=3)))
RESULT_TOKENS = st.one_of(
    TEXT,
    st.builds(b64, JSON_VALUES),
    st.builds(b64, st.dictionaries(st.sampled_from(["proposals", "petitions", "reports"]), st.integers() | INT64)),
)


def expect_ok_or_clear_error(what: str, call) -> object:
    """The call's answer, or None for an allowed error; fails on any other outcome."""
    TRIED[what] += 1
    try:
        answer = call()
        OUTCOMES["OK"] += 1
        return answer
    except grpc.RpcError as err:
        OUTCOMES[err.code().name] += 1
        assert err.code() in ALLOWED, f"{what}: {err.code()} {err.details()}"
        assert error_reason(err), f"{what}: no ErrorInfo reason"
        return None


@pytest.fixture(scope="module")
def silent_stub(devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[jobs_pb2_grpc.JobServiceStub]:
    db = tmp_path_factory.mktemp("fuzz-grpc") / "jobs.sqlite3"
    with silent_rpc() as rpc_url, grpc_server(rpc_url=rpc_url, deployment_path=devnet.deployment_path, db=db) as server:
        assert server.addr.startswith("127.0.0.1:")
        with grpc.insecure_channel(server.addr) as channel:
            yield jobs_pb2_grpc.JobServiceStub(channel)


@pytest.fixture(scope="module")
def completed_job(stack) -> str:
    """A small completed job on the session stack (one block, reports only)."""
    started = stack.stub.StartSync(
        jobs_pb2.StartSyncRequest(type=jobs_pb2.JOB_TYPE_REPORTS_SYNC, from_block=1, to_block=1), timeout=10
    )
    assert wait_for_state(stack.stub, started.job_id, TERMINAL).state == jobs_pb2.JOB_STATE_COMPLETED
    return started.job_id


def job_ids(known: str | None = None) -> st.SearchStrategy[str]:
    ids = [st.uuids(version=4).map(str), st.uuids().map(str), TEXT, st.uuids().map(lambda u: str(u).upper())]
    if known:
        ids.append(st.just(known))
    return st.one_of(ids)


def _show(capsys: pytest.CaptureFixture, what: str, started: float) -> None:
    """Prints how many generated calls were made, past pytest's capture (shown in every run's output)."""
    with capsys.disabled():
        print(
            f"\nfuzz grpc: {what}: {sum(TRIED.values())} generated calls in all so far, {time.monotonic() - started:.1f} s;"
            f" outcomes {dict(OUTCOMES)}"
        )


START = st.fixed_dictionaries(
    {},
    optional={
        "blocks_back": INT64,
        "is_full_sync": st.booleans(),
        "type": ENUMS,
        "request_id": TEXT,
        "from_block": UINT64,
        "to_block": UINT64,
        "incremental": st.booleans(),
        "confirmations": UINT32,
        "timeout_seconds": UINT32,
    },
)


def test_start_sync_with_arbitrary_fields(capsys, silent_stub) -> None:
    @FUZZ
    @given(fields=START)
    def run(fields: dict) -> None:
        request = jobs_pb2.StartSyncRequest(**fields)
        answer = expect_ok_or_clear_error("StartSync", lambda: silent_stub.StartSync(request, timeout=CALL_TIMEOUT_S))
        if answer is not None:
            assert answer.job_id and answer.job.state == jobs_pb2.JOB_STATE_PENDING

    started = time.monotonic()
    run()
    _show(capsys, "StartSync", started)


def test_list_jobs_with_arbitrary_paging(capsys, silent_stub) -> None:
    @FUZZ
    @given(state=ENUMS, type_=ENUMS, page_size=INT32, page_token=st.one_of(st.just(""), LIST_TOKENS), skip=INT32)
    def run(state: int, type_: int, page_size: int, page_token: str, skip: int) -> None:
        request = jobs_pb2.ListJobsRequest(
            state=state, type=type_, page_size=page_size, page_token=page_token, skip=skip
        )
        answer = expect_ok_or_clear_error("ListJobs", lambda: silent_stub.ListJobs(request, timeout=CALL_TIMEOUT_S))
        if answer is not None:
            assert len(answer.jobs) <= (page_size or 20)

    started = time.monotonic()
    run()
    _show(capsys, "ListJobs", started)


def test_cancel_and_delete_with_arbitrary_ids(capsys, silent_stub) -> None:
    @FUZZ
    @given(job_id=job_ids())
    def run(job_id: str) -> None:
        expect_ok_or_clear_error(
            "CancelJob", lambda: silent_stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), timeout=CALL_TIMEOUT_S)
        )
        expect_ok_or_clear_error(
            "DeleteJob", lambda: silent_stub.DeleteJob(jobs_pb2.DeleteJobRequest(job_id=job_id), timeout=CALL_TIMEOUT_S)
        )

    started = time.monotonic()
    run()
    _show(capsys, "CancelJob, DeleteJob", started)


def test_get_job_and_result_with_arbitrary_ids_and_pages(capsys, stack, completed_job: str) -> None:
    @FUZZ
    @given(job_id=job_ids(completed_job), page_size=INT32, page_token=st.one_of(st.just(""), RESULT_TOKENS))
    def run(job_id: str, page_size: int, page_token: str) -> None:
        expect_ok_or_clear_error(
            "GetJob", lambda: stack.stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=CALL_TIMEOUT_S)
        )
        request = jobs_pb2.GetResultRequest(job_id=job_id, page_size=page_size, page_token=page_token)
        expect_ok_or_clear_error("GetResult", lambda: stack.stub.GetResult(request, timeout=CALL_TIMEOUT_S))

    started = time.monotonic()
    run()
    _show(capsys, "GetJob, GetResult", started)


def test_watch_job_with_arbitrary_ids_and_sequences(capsys, stack, completed_job: str) -> None:
    @FUZZ
    @given(job_id=job_ids(completed_job), after=UINT64)
    def run(job_id: str, after: int) -> None:
        def watch() -> list[int]:
            call = stack.stub.WatchJob(
                jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=after), timeout=CALL_TIMEOUT_S
            )
            return [event.sequence for event in call]  # a completed job's stream ends by itself

        sequences = expect_ok_or_clear_error("WatchJob", watch)
        if sequences is not None:
            assert sequences == sorted(sequences)

    started = time.monotonic()
    run()
    _show(capsys, "WatchJob", started)


# --- bugs fuzzing found (fixed): each precise input stays as a regression test -------------------


@pytest.mark.parametrize("value", [5, None, [[1], "a"]], ids=["int", "null", "nested"])
def test_list_jobs_page_token_of_the_wrong_json_shape(silent_stub, value) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        silent_stub.ListJobs(jobs_pb2.ListJobsRequest(page_token=b64(value)), timeout=CALL_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_jobs_page_token_with_a_huge_number(silent_stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        silent_stub.ListJobs(jobs_pb2.ListJobsRequest(page_token=b64([10**400, "x"])), timeout=CALL_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("offset", [10**20, 1e300], ids=["int", "float"])
def test_get_result_page_token_with_a_huge_offset(stack, completed_job: str, offset) -> None:
    request = jobs_pb2.GetResultRequest(job_id=completed_job, page_size=1, page_token=b64({"proposals": offset}))
    with pytest.raises(grpc.RpcError) as caught:
        stack.stub.GetResult(request, timeout=CALL_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_trailing_newline_is_refused_in_request_ids_and_job_ids(silent_stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        silent_stub.StartSync(jobs_pb2.StartSyncRequest(request_id="abc\n"), timeout=CALL_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # the bridge refuses the same key
    with pytest.raises(grpc.RpcError) as caught:
        silent_stub.GetJob(jobs_pb2.GetJobRequest(job_id=f"{uuid.uuid4()}\n"), timeout=CALL_TIMEOUT_S)
    assert error_reason(caught.value) == "INVALID_JOB_ID"  # not JOB_NOT_FOUND
