"""The lean getter decoder gives exactly what eth_abi gives, and refuses what eth_abi refuses."""

from __future__ import annotations

import httpx
import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from server.engine.contracts import entity_kinds, make_decoder

TYPES = ("string", "uint256", "address", "bool", "string", "uint64")


def test_lean_decoder_matches_eth_abi_on_every_getter_answer_of_the_demo_chain(devnet) -> None:
    with httpx.Client(timeout=30) as client:
        for kind in entity_kinds().values():
            address = devnet.deployment[kind.contract]
            count = devnet.expected.counts[kind.name]
            calls = [kind.getter_call(address, i, devnet.expected.head_block) for i in range(1, count + 1)]
            answers = client.post(
                devnet.url,
                json=[{"jsonrpc": "2.0", "id": n, "method": m, "params": p} for n, (m, p) in enumerate(calls)],
            ).json()
            for answer in sorted(answers, key=lambda a: a["id"]):
                data = bytes.fromhex(answer["result"][2:])
                assert kind.decode(data) == abi_decode(kind.output_types, data)


@pytest.mark.parametrize(
    "values",
    [
        ("", 0, "0x" + "00" * 20, False, "", 0),
        ("ünïcødé ✓", 2**256 - 1, "0x" + "ff" * 20, True, "x" * 1000, 2**64 - 1),
        ("a", 2**53 + 1, "0x" + "12" * 20, True, "b" * 31, 2**53),
    ],
)
def test_edge_values_decode_exactly(values: tuple) -> None:
    data = abi_encode(list(TYPES), list(values))
    assert make_decoder(TYPES)(data) == abi_decode(TYPES, data)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d[:-40],  # truncated string body
        lambda d: d[:64],  # shorter than the head
        lambda d: d[:96] + (2).to_bytes(32, "big") + d[128:],  # bool word of 2
        lambda d: d[:64] + b"\x01" + d[65:],  # address with dirty padding
        lambda d: d[:160] + (2**64).to_bytes(32, "big") + d[192:],  # uint64 out of range
        lambda d: (len(d) + 32).to_bytes(32, "big") + d[32:],  # string offset past the end
    ],
)
def test_malformed_answers_are_refused_not_guessed(corrupt) -> None:
    data = abi_encode(list(TYPES), ["title", 7, "0x" + "34" * 20, True, "desc", 9])
    with pytest.raises(Exception):  # noqa: B017 - eth_abi raises several types
        abi_decode(TYPES, corrupt(data))
    with pytest.raises(ValueError):
        make_decoder(TYPES)(corrupt(data))
