"""Schemathesis against the live gateway (a real process on real Redis): over every operation of
openapi.yaml, no 5xx and every response conforms to the contract (status, content type, body schema)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from conftest import TEST_API_KEY, api_keys_config, load_case

REPO = Path(__file__).resolve().parent.parent
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "8"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def live_gateway(redis_url):
    port = _free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "GATEWAY_PORT": str(port), "GATEWAY_EMBEDDED_STACK": "0", "GATEWAY_API_KEYS": api_keys_config(),
           "GATEWAY_RATE_LIMIT": "100000/minute"}
    proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    session = requests.Session()
    session.headers["X-API-Key"] = TEST_API_KEY
    for name in ("case1-vipoma", "case2-insulinoma"):
        session.post(f"{base}/cases?store=true", data=json.dumps(load_case(name)), headers={"Content-Type": "application/json"})
    yield base
    proc.terminate()
    proc.wait(timeout=10)


schema = schemathesis.openapi.from_path(str(REPO / "openapi.yaml"))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_keeps_the_contract(case, live_gateway):
    case.call_and_validate(base_url=live_gateway, headers={"X-API-Key": TEST_API_KEY}, checks=CHECKS, timeout=30)
