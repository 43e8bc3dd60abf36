"""Imports point one way: the gateway (service/) may import the layers below it, never the reverse (issue 17)."""
from __future__ import annotations

import ast
import sys
import tomllib
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


def _offenders(package: str, forbidden) -> dict[str, list[str]]:
    found = {str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path) if forbidden(m))
             for path in (REPO / package).rglob("*.py")}
    return {k: v for k, v in found.items() if v}


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_gateway_reads_summaries_and_counters_below_the_workers():
    """The request path computes and reads treatment-line summaries through summaries/, and /metrics reads the
    workers' counters through store/counters.py: service/ imports no worker module for either."""
    assert _offenders("service", lambda m: _within(m, "workers.summaries", "workers.sync_keys")) == {}


def test_summaries_sit_below_the_gateway_and_the_workers():
    assert _offenders("summaries", lambda m: _within(m, "service", "workers")) == {}


def test_the_local_fhir_server_launcher_needs_only_the_standard_library():
    """`python3 scripts/fhir_server.py ensure-venv` runs on the system python3 before any venv exists (.ci/run)."""
    allowed = set(sys.stdlib_module_names) | {"localfhir"}
    for package in ("localfhir", "scripts/fhir_server.py"):
        paths = [REPO / package] if package.endswith(".py") else list((REPO / package).rglob("*.py"))
        outside = {str(p.relative_to(REPO)): sorted(m for m in _imported_modules(p) if m.split(".")[0] not in allowed)
                   for p in paths}
        assert {k: v for k, v in outside.items() if v} == {}


def test_no_code_is_loaded_by_file_path():
    """An installed wheel ships packages, not scripts/: shipped code and tests import modules, never load a file."""
    loaders = {}
    for package in (*BELOW_THE_GATEWAY, "service", "summaries", "localfhir", "tests", "bench"):
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                     for node in ast.walk(tree) if isinstance(node, ast.Call)}
            found = sorted(calls & {"spec_from_file_location", "run_path"}) + sorted(
                m for m in _imported_modules(path) if _within(m, "scripts"))
            if found:
                loaders[str(path.relative_to(REPO))] = found
    assert loaders == {}


def test_every_package_the_code_imports_is_shipped():
    """pyproject.toml's package list holds every top-level package of this repository that shipped code imports."""
    include = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = {pattern.rstrip("*") for pattern in include}
    local = {p.parent.name for p in REPO.glob("*/__init__.py")}
    imported = {m.split(".")[0] for package in shipped for path in (REPO / package).rglob("*.py") for m in _imported_modules(path)}
    assert (imported & local) - shipped == set()


def test_mappings_the_bottom_layer_imports_no_other_layer():
    """mappings/ holds the shared FHIR vocabulary, the input errors and the tables that every layer imports."""
    others = ("service", "workers", "store", "treatment_lines", "registry", "narrative", "summaries", "localfhir")
    assert _offenders("mappings", lambda m: _within(m, *others)) == {}


def test_tests_share_helpers_through_modules_not_through_other_tests():
    """Helpers live in plain modules (tests/*.py without the test_ prefix); importing a test module (or conftest)
    runs its tests' collection twice and redefines its fixtures (ruff F811)."""
    offenders = {path.name: sorted(m for m in _imported_modules(path) if m.split(".")[0].startswith("test_") or m == "conftest")
                 for path in sorted((REPO / "tests").glob("*.py"))}
    assert {name: found for name, found in offenders.items() if found} == {}
