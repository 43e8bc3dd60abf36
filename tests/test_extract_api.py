"""POST /cases/$extract and POST /DocumentReference/{id}/$extract over HTTP: the drafts validate, map, and read
as the golden treatment lines; notes arrive as plain text, as FHIR resources, or already stored."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from case_files import SEED_CASES
from gateway_setup import gateway_config

from service.auth import key_hash
from treatment_lines.engine import summarise

DATA = Path(__file__).parent / "data"
REPORT = (DATA / "case1-vipoma" / "narrative.txt").read_text(encoding="utf-8")
LABELS = dict(zip(SEED_CASES, ("Case 1", "Case 2")))


def extract(client, body, content_type="text/plain; charset=utf-8"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/cases/$extract", data=data, content_type=content_type)


@pytest.fixture
def drafts(client) -> dict[str, dict]:
    response = extract(client, REPORT)
    assert response.status_code == 200 and response.mimetype == "application/json"
    return {d["label"]: d for d in response.get_json()["drafts"]}


def _line_agents(summary: dict) -> list[tuple[str, list[str]]]:
    return [(line["modality"], sorted((c.get("code") or {}).get("code", c["text"]) for c in line["components"]
                                      if c["role"] == "line")) for line in summary["lines"]]


@pytest.mark.parametrize("case", SEED_CASES)
def test_each_seed_draft_validates_maps_and_gives_the_golden_treatment_lines(client, drafts, case):
    draft = drafts[LABELS[case]]
    assert draft["issues"] == []
    validated = client.post("/cases/$validate", data=json.dumps(draft["case"]), content_type="application/json")
    assert validated.status_code == 200, validated.get_json()
    mapped = client.post("/cases", data=json.dumps(draft["case"]), content_type="application/json")
    assert mapped.status_code == 200, mapped.get_json()
    lines = summarise([entry["resource"] for entry in mapped.get_json()["entry"]])
    golden = json.loads((DATA / case / "expected-lines.json").read_text(encoding="utf-8"))
    assert _line_agents(lines) == _line_agents(golden)


def test_every_fact_of_a_draft_has_evidence_quoting_the_text(drafts):
    for draft in drafts.values():
        cited = {record["fact"] for record in draft["evidence"]}
        for section in ("conditions", "observations", "procedures", "medications", "outcomes"):
            for fact in draft["case"].get(section, []):
                assert fact["id"] in cited or fact.get("result") == "normal", fact  # the "to normal" value is cited by its outcome
        for record in draft["evidence"]:
            assert REPORT[record["start"]:record["end"]] == record["text"]
        assert all(m["key"] is None or m["fact"] is None for m in draft["unmapped"])


def test_a_document_reference_or_binary_carrying_the_text_gives_the_same_drafts(client, drafts):
    data = base64.b64encode(REPORT.encode("utf-8")).decode("ascii")
    document = {"resourceType": "DocumentReference", "status": "current",
                "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERg=="}},
                            {"attachment": {"contentType": "text/plain; charset=utf-8", "data": data}}]}
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": data}
    for resource in (document, binary):
        response = extract(client, resource, "application/fhir+json")
        assert response.status_code == 200
        assert [d["case"] for d in response.get_json()["drafts"]] == [d["case"] for d in drafts.values()]


def test_a_stored_document_reference_is_extracted_from_the_store(client):
    note = "A 72-year-old man with a pancreatic insulinoma. Octreotide was started at a dose of 100 mcg/8 h."
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p-note-1"}, "request": {"method": "PUT", "url": "Patient/p-note-1"}},
        {"resource": {"resourceType": "DocumentReference", "id": "note-1", "status": "current",
                      "subject": {"reference": "Patient/p-note-1"},
                      "content": [{"attachment": {"contentType": "text/plain",
                                                  "data": base64.b64encode(note.encode()).decode()}}]},
         "request": {"method": "PUT", "url": "DocumentReference/note-1"}}]}
    stored = client.post("/", data=json.dumps(bundle), content_type="application/fhir+json")
    assert stored.status_code == 200, stored.get_json()
    response = client.post("/DocumentReference/note-1/$extract")
    assert response.status_code == 200
    (draft,) = response.get_json()["drafts"]
    assert draft["case"]["patient"]["ageAtPresentation"] == {"value": 72, "unit": "a"}
    (regimen,) = draft["case"]["medications"]
    assert regimen["dosages"][0]["frequency"]["every"] == {"value": 8, "unit": "h"}
    assert client.post("/DocumentReference/no-such-note/$extract").status_code == 404


@pytest.mark.parametrize("body, content_type, status", [
    ("", "text/plain", 400),
    ("   \n ", "text/plain", 400),
    (b"\xff\xfe not utf-8", "text/plain", 400),
    ("<p>html</p>", "text/html", 415),
    ({"resourceType": "Patient"}, "application/fhir+json", 422),
    ({"resourceType": "Binary", "contentType": "application/pdf", "data": "JVBERg=="}, "application/fhir+json", 422),
    ({"resourceType": "Binary", "contentType": "text/plain", "data": "not base64!"}, "application/fhir+json", 422),
    ([1, 2], "application/json", 400),
    ("x" * 200_001, "text/plain", 413),
])
def test_unusable_input_is_an_operation_outcome(client, body, content_type, status):
    response = extract(client, body, content_type)
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_reading_a_stored_note_needs_read_scope_and_extracting_a_posted_one_write_scope(redis_url, redis_client, sqlite_url):
    from service import create_app

    keys = [{"client": "reader", "sha256": key_hash("reader-key"), "scopes": ["system/DocumentReference.read"]}]
    client = create_app(gateway_config(redis_url, sqlite_url, API_KEYS=json.dumps(keys))).test_client()
    client.environ_base["HTTP_X_API_KEY"] = "reader-key"
    assert client.post("/DocumentReference/absent/$extract").status_code == 404  # allowed, and not stored
    assert client.post("/cases/$extract", data="A note.", content_type="text/plain").status_code == 403


def test_the_review_page_and_its_assets_are_served_by_the_gateway(client):
    page = client.get("/cases/$extract/review")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # no CDN
    for asset in ("/static/extract/review.js", "/static/extract/review.css"):
        assert asset in html and client.get(asset).status_code == 200
