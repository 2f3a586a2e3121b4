"""gRPC over TLS when the server is given a certificate and key (a self-signed pair here).

A client that does not talk TLS cannot call it; the Python client and the REST
bridge that trust the certificate (CHAINSYNC_TLS_CA) can, with a token too.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from chainsync.v1 import jobs_pb2, jobs_pb2_grpc
from chainsync_client import GrpcClient

from tests.processes import grpc_server, rest_bridge


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_grpc_over_tls_refuses_plaintext_and_serves_clients_that_trust_it(devnet, tmp_path, self_signed) -> None:
    cert, key = self_signed
    token = uuid.uuid4().hex
    tls = {"CHAINSYNC_TLS_CERT": str(cert), "CHAINSYNC_TLS_KEY": str(key), "CHAINSYNC_API_TOKEN": token}
    with grpc_server(
        rpc_url=devnet.url, deployment_path=devnet.deployment_path, db=tmp_path / "j.db", extra_env=tls
    ) as server:
        with grpc.insecure_channel(server.addr) as plain:
            with pytest.raises(grpc.RpcError) as err:
                jobs_pb2_grpc.JobServiceStub(plain).StartSync(jobs_pb2.StartSyncRequest(blocks_back=5), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        client = GrpcClient(server.addr, token=token, tls_ca=str(cert))
        job = client.start_sync(blocks_back=50)
        assert client.wait(job.id, timeout=60).status == "completed"

        with rest_bridge(server.addr, extra_env={"CHAINSYNC_TLS_CA": str(cert)}) as bridge:
            status = httpx.get(
                f"{bridge.url}/api/blockchain/sync/status/{job.id}", headers={"Authorization": f"Bearer {token}"}
            )
            assert status.status_code == 200 and status.json()["job"]["status"] == "completed"
        with rest_bridge(server.addr) as plain_bridge:  # a bridge that does not talk TLS gets no answer: 503
            refused = httpx.get(
                f"{plain_bridge.url}/api/blockchain/sync/status/{job.id}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            assert refused.status_code == 503
