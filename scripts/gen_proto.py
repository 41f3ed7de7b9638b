"""Regenerate etcdsync's protobuf modules (``make proto``).

Compiles ``proto/etcdsync/client/_pb/*.proto`` into ``etcdsync/client/_pb/*_pb2.py`` (messages and
service descriptors) and ``*_pb2.pyi`` (mypy-protobuf stubs).  No ``*_pb2_grpc.py`` is generated: the
client builds its method table from the service descriptors instead.

Run it from anywhere with the development virtualenv's interpreter::

    .venv/bin/python scripts/gen_proto.py

It needs ``grpcio-tools`` and ``mypy-protobuf`` (the ``dev`` extra).  The output is deterministic, so
running it twice changes nothing; it prints each generated file and whether it changed, and removes
generated files whose ``.proto`` is gone.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_DIR = PROTO_ROOT / "etcdsync" / "client" / "_pb"
OUT_DIR = ROOT / "etcdsync" / "client" / "_pb"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _mypy_plugin() -> str:
    # protoc finds plugins on PATH, which may not include the virtualenv's bin directory when the
    # script is run as `.venv/bin/python scripts/gen_proto.py`; look next to the interpreter first.
    candidate = Path(sys.executable).parent / "protoc-gen-mypy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("protoc-gen-mypy")
    if found is None:
        sys.exit("protoc-gen-mypy not found: install the dev extra (mypy-protobuf)")
    return found


def main() -> int:
    try:
        import grpc_tools  # noqa: F401  (only checking that it is installed)
    except ImportError:
        sys.exit(f"grpcio-tools is not installed for {sys.executable}: install the dev extra")

    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        sys.exit(f"no .proto files under {PROTO_DIR.relative_to(ROOT)}")
    if not (OUT_DIR / "__init__.py").exists():
        sys.exit(f"{OUT_DIR.relative_to(ROOT)}/__init__.py is missing; it carries the package docstring")

    expected = {OUT_DIR / (proto.stem + suffix) for proto in protos for suffix in GENERATED_SUFFIXES}
    before = {path: _digest(path) for path in expected}

    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        "proto",
        f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
        "--python_out=.",
        "--mypy_out=.",
        *(str(proto.relative_to(ROOT)) for proto in protos),
    ]
    print("+", " ".join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)

    for path in sorted(expected):
        if not path.exists():
            sys.exit(f"protoc did not produce {path.relative_to(ROOT)}")
        state = "unchanged" if before[path] == _digest(path) else "updated"
        print(f"generated {path.relative_to(ROOT)} ({state})")

    for path in sorted(OUT_DIR.iterdir()):
        if path.name.endswith(GENERATED_SUFFIXES) and path not in expected:
            path.unlink()
            print(f"removed stale {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
