"""Generates the Python gRPC stubs from proto/ into gen/ (never edit gen/ by hand).

    python proto/generate.py [OUT_DIR]

The stubs land in the package ``chainsync.v1`` under OUT_DIR (default gen/),
which the editable install puts on sys.path. tests/test_proto.py regenerates
into a temporary folder and fails when gen/ is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import google.api
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO = PROTO_ROOT.parent
GOOGLEAPIS_ROOT = Path(google.api.__path__[0]).parent.parent  # ships google/api/*.proto


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.glob("chainsync/**/*.proto"))


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    import grpc_tools

    well_known = Path(grpc_tools.__path__[0]) / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{GOOGLEAPIS_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in {p.parent.relative_to(PROTO_ROOT) for p in proto_files()}:
        for part in [package, *package.parents]:
            if str(part) != ".":
                (out_dir / part / "__init__.py").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "gen")
