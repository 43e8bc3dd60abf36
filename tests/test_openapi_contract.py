"""openapi.yaml is a valid OpenAPI 3.1 document and describes exactly the routes the app serves."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

SPEC = yaml.safe_load((Path(__file__).resolve().parent.parent / "service" / "openapi.yaml").read_text(encoding="utf-8"))
# Pages, not API: the dashboard's own data routes and the reference's static files (their entry pages,
# /docs/ and /rq/, are in the contract).
PAGE_PREFIXES, PAGE_ENTRIES = ("/static/", "/docs/", "/rq/"), ("/docs/", "/rq/")


def _normalise(path: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?[A-Za-z_]+>|\{[A-Za-z_]+\}", "{}", path)


def test_openapi_document_is_valid():
    validate(SPEC)


def test_every_route_is_documented_and_every_documented_route_exists(app):
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(PAGE_PREFIXES) and rule.rule not in PAGE_ENTRIES:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((_normalise(rule.rule), method.lower()))
    documented = {(_normalise(path), method) for path, ops in SPEC["paths"].items() for method in ops if method != "parameters"}
    assert served - documented == set(), "served but not in openapi.yaml"
    assert documented - served == set(), "in openapi.yaml but not served"


def test_the_gateway_serves_its_contract(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200 and yaml.safe_load(response.data)["openapi"] == "3.1.0"


def _examples():
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            if method == "parameters":  # path-level parameters, not an operation
                continue
            bodies = [("request", op.get("requestBody", {}).get("content", {}))]
            bodies += [(f"response {status}", r.get("content", {})) for status, r in op.get("responses", {}).items() if "content" in r]
            for where, content in bodies:
                for media in content.values():
                    for name, example in media.get("examples", {}).items():
                        yield f"{method.upper()} {path} {where} {name}", media["schema"], example["value"]


def test_every_example_matches_its_schema():
    import jsonschema

    examples = list(_examples())
    assert len(examples) >= 4
    for label, schema, value in examples:
        root = {**SPEC, **schema}  # lets '#/components/...' references resolve inside the contract
        errors = [e.message for e in jsonschema.Draft202012Validator(root).iter_errors(value)]
        assert errors == [], f"{label}: {errors}"
