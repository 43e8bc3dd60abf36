"""The whole seed flow through real processes (gateway, worker, local FHIR server) writes no PHI to any log:
no names, no identifiers (business identifiers, record numbers, patient ids), no birth data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from bundles import stored_patient_id
from case_files import load_case
from gateway_setup import TEST_API_KEY
from live_gateway import REPO, live_gateway
from mappings.case_bundle import case_to_bundle

NAME, BIRTH, MRN = ("Maribel", "Quintanilla-Ortega"), "1958-07-23", "MRN-7730-4411"


def _ehr_bundle() -> dict:
    """An EHR's bundle: a named patient with a record number and birth date, and one procedure."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6a1f0c2e-1b2c-4d3e-9f00-000000000001",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3.4.5", "value": MRN}],
                      "name": [{"given": [NAME[0]], "family": NAME[1]}], "birthDate": BIRTH, "gender": "female"},
         "request": {"method": "PUT", "url": f"Patient?identifier=urn:oid:1.2.3.4.5|{MRN}"}},
        {"resource": {"resourceType": "Procedure", "status": "completed", "identifier": [{"system": "urn:oid:1.2.3.4.6", "value": f"{MRN}-P1"}],
                      "code": {"coding": [{"system": "http://snomed.info/sct", "code": "764677008"}], "text": f"SIRT for {NAME[1]}"},
                      "subject": {"reference": "urn:uuid:6a1f0c2e-1b2c-4d3e-9f00-000000000001"}, "performedDateTime": "2012-03-01"},
         "request": {"method": "PUT", "url": f"Procedure?identifier=urn:oid:1.2.3.4.6|{MRN}-P1"}},
    ]}


def test_seed_flow_logs_no_patient_identifiers_names_or_birth_data(redis_url, redis_client, fhir_isolated, tmp_path):
    sync = {"SYNC_UPSTREAM_URL": fhir_isolated.base_url, "SYNC_SWEEP_SECONDS": "1", "PYTHONUNBUFFERED": "1"}
    gateway_log, worker_log = tmp_path / "gateway.log", tmp_path / "worker.log"
    with gateway_log.open("wb") as g_out, worker_log.open("wb") as w_out:
        worker = subprocess.Popen([sys.executable, "-m", "workers", "--url", redis_url], cwd=REPO, env={**os.environ, **sync},
                                  stdout=w_out, stderr=subprocess.STDOUT)
        try:
            with live_gateway(redis_url, g_out, GATEWAY_REFERENCE_POLICY="strict", **sync) as base:
                patients = _run_flow(base)
        finally:
            worker.terminate()
            worker.wait(timeout=20)
    lines = gateway_log.read_text().splitlines() + worker_log.read_text().splitlines()
    assert len(lines) > 20, "the flow should have logged its requests and jobs"
    case_ids = [load_case(n)["caseId"] for n in ("case1-vipoma", "case2-insulinoma")]
    forbidden = [*NAME, BIRTH, MRN, "1958", *case_ids, *patients]
    leaks = [(word, line) for line in lines for word in forbidden if word in _without_random_ids(line)]
    assert leaks == [], leaks[:5]
    assert any('"request_id"' in line for line in lines) and any("workers.jobs" in line for line in lines)


def _without_random_ids(line: str) -> str:
    """The line without its generated request ids: 32 random hex digits hold "1958" once in ~2,000 ids, which is
    chance, not a birth year. An id that is not plain hex stays in the text that is searched."""
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    for key in ("request_id", "parent_request_id"):
        value = record.get(key)
        if isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value):
            record.pop(key)
    return json.dumps(record, ensure_ascii=False)


def _run_flow(base: str) -> list[str]:
    session = requests.Session()
    session.headers.update({"X-API-Key": TEST_API_KEY})
    fhir = {"Content-Type": "application/fhir+json"}
    ehr = session.post(f"{base}/Bundle", data=json.dumps(_ehr_bundle()), headers=fhir).json()
    patients = [stored_patient_id(ehr)]
    for name in ("case1-vipoma", "case2-insulinoma"):
        case = load_case(name)
        assert session.post(f"{base}/cases", json=case).status_code == 200
        stored = session.post(f"{base}/cases?store=true", json=case).json()
        patients.append(stored_patient_id(stored))
    bad = case_to_bundle(load_case("case1-vipoma"))
    bad["entry"][1]["resource"]["subject"]["reference"] = f"Patient/{MRN}"
    assert session.post(f"{base}/Bundle", data=json.dumps(bad), headers=fhir).status_code == 404
    assert session.post(f"{base}/cases", data=json.dumps({"caseId": MRN, "patient": {"sex": NAME[0]}}),
                        headers={"Content-Type": "application/json"}).status_code == 400
    for pid in patients:
        for path in ("$everything", "procedure-history", "treatment-lines", "timeline"):
            assert session.get(f"{base}/Patient/{pid}/{path}").status_code == 200, path
        assert session.get(f"{base}/Procedure", params={"subject": f"Patient/{pid}"}).status_code == 200
    assert session.get(f"{base}/Patient/{MRN}").status_code == 404
    jobs = [session.post(f"{base}/sync/push", json={}).json()["id"], session.post(f"{base}/sync/pull", json={}).json()["id"]]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        states = [session.get(f"{base}/jobs/{job}").json()["status"] for job in jobs]
        if all(s in ("finished", "failed") for s in states):
            break
        time.sleep(0.3)
    assert states == ["finished", "finished"], states
    return patients
