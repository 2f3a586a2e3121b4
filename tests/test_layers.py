"""The server's layers import only downward, and the rules that cross the system live in one place.

Layers, bottom to top (README "Layout"): the base modules at server/'s top
(kinds, states, errors, stopping, retry, logs, metrics, config), then
transport, engine, jobs, service, and the command (server/cli.py). A module
may import its own layer and those below (the command, which starts every
piece, anything); the REST bridge, a client of the
JobService, may import the base and the service's request rules, never the
jobs, the engine or the transport.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("base", "transport", "engine", "jobs", "service", "command")


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "rest_bridge":
        return "bridge"
    if module == "server.cli":
        return "command"
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else "base"


def imports(path: Path) -> set[str]:
    """Every server/rest_bridge module the file imports, at any depth (type-checking imports aside)."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("server", "rest_bridge"):
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "server" else [node.module]
            found.update(names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in ("server", "rest_bridge"))
    return found


def modules() -> dict[str, Path]:
    found = {}
    for folder in ("server", "rest_bridge"):
        for path in (REPO / folder).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def test_each_layer_imports_only_its_own_and_those_below() -> None:
    wrong = []
    for module, path in modules().items():
        here = layer_of(module)
        for imported in imports(path):
            there = layer_of(imported)
            if here == "command":  # `chainsync` starts every piece
                allowed = True
            elif here == "bridge":
                allowed = there in ("base", "bridge") or imported.startswith(
                    ("server.service.requests", "server.engine.ranges")
                )
            else:
                allowed = there != "bridge" and LAYERS.index(there) <= LAYERS.index(here)
            if not allowed:
                wrong.append(f"{module} ({here}) imports {imported} ({there})")
    assert not wrong, "\n".join(wrong)


def test_one_module_names_the_record_kinds() -> None:
    """server/kinds.py declares them; everything else in server/ and rest_bridge/ derives from it."""
    naming = sorted(str(p.relative_to(REPO)) for p in modules().values() if re.search("petition", p.read_text(), re.I))
    assert naming == ["server/kinds.py"]
