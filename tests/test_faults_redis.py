"""Redis killed and restarted under load: the gateway answers 503 OperationOutcome while it is down,
recovers by itself without a restart, and with AOF no acknowledged write is lost or duplicated."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import redis
import requests

from conftest import TEST_API_KEY
from live_gateway import free_port, live_gateway
from reliability import record

pytestmark = pytest.mark.faults


def _start_redis(port: int, data_dir: str) -> subprocess.Popen:
    proc = subprocess.Popen([shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--dir", data_dir,
                             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


@pytest.fixture
def own_redis():
    if not shutil.which("redis-server"):
        pytest.skip("needs the redis-server binary")
    port, data_dir = free_port(), tempfile.mkdtemp(prefix="fault-redis-")
    state = {"proc": _start_redis(port, data_dir), "port": port, "dir": data_dir}
    yield state
    state["proc"].kill()
    state["proc"].wait()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def gateway(own_redis):
    with live_gateway(f"redis://127.0.0.1:{own_redis['port']}/0") as base:
        yield base


def _observation_bundle(n: int) -> dict:
    entries = []
    if n == 0:
        entries.append({"resource": {"resourceType": "Patient", "id": "fault-p1"}, "request": {"method": "PUT", "url": "Patient/fault-p1"}})
    entries.append({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": f"lab {n}"},
                                 "identifier": [{"system": "urn:fault-test", "value": str(n)}], "subject": {"reference": "Patient/fault-p1"}},
                    "request": {"method": "PUT", "url": f"Observation?identifier=urn:fault-test|{n}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_redis_restart_loses_no_acknowledged_write_and_the_gateway_recovers_by_itself(own_redis, gateway):
    session = requests.Session()
    session.headers.update({"X-API-Key": TEST_API_KEY, "Content-Type": "application/fhir+json"})
    total, statuses, outages = 60, [], []

    def send(n: int) -> None:
        """Send until acknowledged, as an EHR would: conditional writes make the retry safe."""
        while True:
            try:
                response = session.post(f"{gateway}/Bundle", data=json.dumps(_observation_bundle(n)), timeout=10)
            except requests.ConnectionError:
                statuses.append("connection-error")
                time.sleep(0.1)
                continue
            statuses.append(response.status_code)
            if response.status_code == 200:
                return
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["resourceType"] == "OperationOutcome" and response.headers["Retry-After"]
            outages.append(time.monotonic())
            time.sleep(0.1)

    restarted_at = {}

    def chaos() -> None:
        time.sleep(0.3)
        own_redis["proc"].send_signal(signal.SIGKILL)
        own_redis["proc"].wait()
        restarted_at["down"] = time.monotonic()
        time.sleep(1.0)
        own_redis["proc"] = _start_redis(own_redis["port"], own_redis["dir"])
        restarted_at["up"] = time.monotonic()

    killer = threading.Thread(target=chaos)
    killer.start()
    for n in range(total):
        send(n)
        time.sleep(0.02)
    killer.join()
    assert outages, "the gateway never answered 503 while Redis was down"
    held = session.get(f"{gateway}/Observation?subject=Patient/fault-p1&_count=1000").json()
    labs = sorted(int(e["resource"]["code"]["text"].split()[1]) for e in held["entry"])
    assert labs == list(range(total))  # every acknowledged write, each exactly once
    assert requests.get(f"{gateway}/healthz").status_code == 200
    record("Redis killed (SIGKILL) and restarted during writes", "SIGKILL redis-server, restart after 1 s on the same AOF",
           f"{total} transactions (conditional PUT), retried on 503", f"{len(labs)} Observations, {len(set(labs))} distinct",
           max(outages) - restarted_at["down"], "redis-restart")
