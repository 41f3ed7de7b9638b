"""The three layers import only downward (STYLE rule 1), checked by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "etcdsync"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_pb" not in p.relative_to(PACKAGE).parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]  # a module's package; for __init__ the package itself
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_there_are_modules_to_check() -> None:
    assert len(_modules()) > 5


@pytest.mark.parametrize("path", _modules(), ids=_rel)
def test_layering(path: Path) -> None:
    rel = path.relative_to(PACKAGE).parts
    imports = _imports(path)

    def imported(prefix: str) -> list[str]:
        return sorted(n for n in imports if n == prefix or n.startswith(prefix + "."))

    if rel[:2] == ("client", "_sansio"):
        # Pure protocol logic: no I/O framework and no gRPC/protobuf.
        for banned in ("trio", "grpc", "google.protobuf", "h2"):
            assert not imported(banned), f"{_rel(path)} imports {imported(banned)}"
    if rel[:2] != ("client", "_convert"):
        # Protobuf stays behind the conversion package.
        assert not imported("etcdsync.client._pb"), f"{_rel(path)} imports generated protobuf"
    if rel[0] != "client" and rel[0] != "testing":
        # Recipes use only the public client API, plus the one shared helper that keeps nurseries
        # from leaking ExceptionGroups out of context managers (STYLE rule 22: "one shared helper").
        private = [
            n
            for n in imported("etcdsync.client")
            if any(p.startswith("_") for p in n.split(".")[2:3])
            and not n.startswith("etcdsync.client._nursery")
        ]
        assert not private, f"{_rel(path)} imports private client modules {private}"
    if rel[0] == "testing":
        # The harness must not depend on the code under test.
        assert not imported("etcdsync.client"), f"{_rel(path)} imports the client"
