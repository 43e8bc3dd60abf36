"""Imports point one way: the gateway (service/) may import the layers below it, never the reverse (issue 17)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BELOW_THE_GATEWAY = ("workers", "store", "treatment_lines", "mappings", "registry", "narrative")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", BELOW_THE_GATEWAY)
def test_layers_below_the_gateway_never_import_it(package):
    offenders = {str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path) if m == "service" or m.startswith("service."))
                 for path in (REPO / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_store_imports_no_engine_above_it():
    """store/ holds the record; it does not know about treatment lines, narrative extraction or sync jobs."""
    above = ("workers", "treatment_lines", "narrative")
    offenders = {str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path) if m.split(".")[0] in above)
                 for path in (REPO / "store").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
