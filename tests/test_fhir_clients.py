"""Real FHIR client libraries, unmodified, against a live gateway process on each engine (SQLite, PostgreSQL).

smart-on-fhir `fhirclient` 4.x and beda-software `fhirpy` 2.x from PyPI, and, when node is installed,
`fhir-kit-client` from npm (tests/clients/): each drives create, read, update, conditional create, delete,
search over more than one page, history, $everything and a transaction. A client that breaks shows where the
server departs from R4 http.html; the fix goes into the server, never the client.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from bundles import stored_patient_id
from collections.abc import Iterator
from pathlib import Path

import databases
import pytest
import requests
from gateway_setup import TEST_API_KEY
from fhirclient.models.bundle import Bundle
from fhirclient.models.patient import Patient
from fhirclient.models.practitioner import Practitioner
from fhirclient.server import FHIRServer
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound
from live_gateway import live_gateway

from store import db

CLIENTS = Path(__file__).parent / "clients"
MRN_SYSTEM = "http://hospital.smarthealthit.org"   # the MRN system Synthea writes
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
PAGE, MATCHES = 3, 7   # more than two pages of search results


@pytest.fixture(scope="module")
def gateway(redis_url, database_url) -> Iterator[str]:
    databases.empty(db.engine_for(database_url))
    with live_gateway(redis_url, database_url=database_url) as base:
        yield base


def synthea_patient(family: str, mrn: str, given: str = "Ahmad") -> dict:
    return {"resourceType": "Patient",
            "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                            "system": MRN_SYSTEM, "value": mrn}],
            "name": [{"use": "official", "family": family, "given": [given]}], "gender": "male", "birthDate": "1961-04-17"}


def unique(prefix: str) -> str:
    """A family name or identifier of this test only: tests share one database per engine."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def transaction_bundle(family: str, mrn: str) -> dict:
    """A Patient (conditional create on its MRN) and a Practitioner with an NPI, in one transaction."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": synthea_patient(family, mrn),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN_SYSTEM}|{mrn}"}},
        {"resource": {"resourceType": "Practitioner", "identifier": [{"system": NPI_SYSTEM, "value": "9999999991"}],
                      "name": [{"family": family, "prefix": ["Dr."]}]},
         "request": {"method": "PUT", "url": f"Practitioner/{family.lower()}"}}]}


# -- fhirclient (smart-on-fhir) ----------------------------------------------------------------------------------
def fhirclient_server(base: str) -> FHIRServer:
    server = FHIRServer(None, base_uri=base)
    server.session.headers["X-API-Key"] = TEST_API_KEY  # its one requests.Session carries every call
    return server


def test_fhirclient_creates_reads_updates_and_deletes_a_patient(gateway):
    server = fhirclient_server(gateway)
    created = Patient(synthea_patient(unique("Fc"), unique("MRN-"))).create(server)
    patient = Patient.read(created["id"], server)
    assert patient.meta.versionId == "1" and patient.gender == "male"
    patient.gender = "female"
    updated = patient.update()
    assert updated["meta"]["versionId"] == "2"
    again = Patient.read(created["id"], server)
    assert (again.gender, again.meta.versionId) == ("female", "2")
    again.delete()
    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(created["id"], server)
    assert gone.value.response.status_code == 410


def test_fhirclient_search_follows_next_links_over_every_page(gateway):
    server = fhirclient_server(gateway)
    family = unique("Fcpage")
    made = {Patient(synthea_patient(family, unique("MRN-"))).create(server)["id"] for _ in range(MATCHES)}
    pages = list(Patient.where({"family": family, "_count": str(PAGE)}).perform_iter(server))
    assert len(pages) == 3 and [len(p.entry) for p in pages] == [3, 3, 1]
    assert {e.resource.id for p in pages for e in p.entry} == made


def test_fhirclient_transaction_conditional_create_history_and_everything(gateway):
    server = fhirclient_server(gateway)
    family, mrn = unique("Fctx"), unique("MRN-")
    first = Bundle(transaction_bundle(family, mrn)).create(server)
    assert first["type"] == "transaction-response"
    assert [e["response"]["status"].split()[0] for e in first["entry"]] == ["201", "201"]
    replay = Bundle(transaction_bundle(family, mrn)).create(server)   # ifNoneExist matches: nothing new
    assert [e["response"]["etag"] for e in replay["entry"]] == ['W/"1"', 'W/"1"']
    pid = stored_patient_id(first)
    assert Practitioner.read(family.lower(), server).identifier[0].system == NPI_SYSTEM
    patient = Patient.read(pid, server)
    patient.birthDate = None
    patient.update()
    history = Bundle.read_from(f"Patient/{pid}/_history", server)
    assert history.type == "history" and [e.response.etag for e in history.entry] == ['W/"2"', 'W/"1"']
    everything = Bundle.read_from(f"Patient/{pid}/$everything", server)
    assert everything.type == "searchset" and [e.resource.id for e in everything.entry] == [pid]


# -- fhirpy (beda-software) --------------------------------------------------------------------------------------
def fhirpy_client(base: str) -> SyncFHIRClient:
    return SyncFHIRClient(base, extra_headers={"X-API-Key": TEST_API_KEY})


def test_fhirpy_saves_reads_updates_and_deletes_a_patient(gateway):
    client = fhirpy_client(gateway)
    patient = client.resource("Patient", **synthea_patient(unique("Fp"), unique("MRN-")))
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"
    patient["gender"] = "female"
    patient.save()
    assert patient["meta"]["versionId"] == "2"
    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["gender"] == "female" and fetched["meta"]["versionId"] == "2"
    patient.delete()
    with pytest.raises(ResourceNotFound):
        client.reference("Patient", patient.id).to_resource()


def test_fhirpy_conditional_create_and_get_or_create_find_the_one_match(gateway):
    client = fhirpy_client(gateway)
    family, mrn = unique("Fpcond"), unique("MRN-")
    token = f"{MRN_SYSTEM}|{mrn}"
    first = client.resource("Patient", **synthea_patient(family, mrn)).create(identifier=token)
    second = client.resource("Patient", **synthea_patient(family, mrn, given="Other")).create(identifier=token)
    assert second.id == first.id and second["name"][0]["given"] == ["Ahmad"]
    found, created = client.resources("Patient").search(identifier=token).get_or_create(
        client.resource("Patient", **synthea_patient(family, mrn)))
    assert (found.id, created) == (first.id, False)
    assert len(client.resources("Patient").search(family=family).fetch_all()) == 1


def test_fhirpy_search_limit_fetch_all_reads_every_page(gateway):
    client = fhirpy_client(gateway)
    family = unique("Fppage")
    made = set()
    for _ in range(MATCHES):
        patient = client.resource("Patient", **synthea_patient(family, unique("MRN-")))
        patient.save()
        made.add(patient.id)
    search = client.resources("Patient").search(family=family).limit(PAGE)
    assert len(search.fetch()) == PAGE
    assert {p.id for p in search.fetch_all()} == made


def test_fhirpy_transaction_history_and_everything(gateway):
    client = fhirpy_client(gateway)
    family, mrn = unique("Fptx"), unique("MRN-")
    response = client.execute("/", method="post", data=transaction_bundle(family, mrn))
    assert response["type"] == "transaction-response"
    pid = stored_patient_id(response)
    history = client.execute(f"Patient/{pid}/_history", method="get")
    assert history["type"] == "history" and len(history["entry"]) == 1
    everything = client.reference("Patient", pid).execute("$everything", method="get")
    assert everything["type"] == "searchset" and everything["entry"][0]["resource"]["id"] == pid
    client.resource("Observation", status="final", subject={"reference": f"Patient/{pid}"},
                    code={"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body height"}]},
                    valueQuantity={"value": 176.0, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}).save()
    posted = client.reference("Patient", pid).execute("$everything", method="post",
                                                      data={"resourceType": "Parameters", "parameter": [{"name": "_count", "valueInteger": 1}]})
    assert posted["total"] == 2 and len(posted["entry"]) == 1


# -- fhir-kit-client (node) --------------------------------------------------------------------------------------
def test_fhir_kit_client_script_runs_every_interaction(gateway, tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the fhir-kit-client test in CI")
        pytest.skip("node/npm are not installed")
    for name in ("package.json", "package-lock.json", "fhir_kit.js"):
        shutil.copy(CLIENTS / name, tmp_path / name)
    install = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], check=False, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    run = subprocess.run(["node", "fhir_kit.js", gateway, TEST_API_KEY, unique("Fk")], check=False, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report == {"create": 201, "read": "1", "update": "2", "conditionalCreate": "same id", "searchPages": 3,
                      "searchMatches": MATCHES, "history": 2, "everything": 1, "transaction": ["201", "201"], "delete": 410}
