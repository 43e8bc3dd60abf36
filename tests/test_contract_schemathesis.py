"""Schemathesis against the live gateway (a real process on real Redis): over every operation of
openapi.yaml, no 5xx and every response conforms to the contract (status, content type, body schema)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from case_files import load_case
from gateway_setup import TEST_API_KEY
from live_gateway import live_gateway

REPO = Path(__file__).resolve().parent.parent
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def live(redis_url):
    with live_gateway(redis_url) as base:
        session = requests.Session()
        session.headers["X-API-Key"] = TEST_API_KEY
        for name in ("case1-vipoma", "case2-insulinoma"):
            session.post(f"{base}/cases?store=true", data=json.dumps(load_case(name)), headers={"Content-Type": "application/json"})
        yield base


schema = schemathesis.openapi.from_path(str(REPO / "service" / "openapi.yaml"))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_keeps_the_contract(case, live):
    case.call_and_validate(base_url=live, headers={"X-API-Key": TEST_API_KEY}, checks=CHECKS, timeout=30)
