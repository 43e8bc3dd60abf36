"""Bad case documents get an OperationOutcome naming every problem by JSON path, with the right 4xx status."""
from __future__ import annotations

import copy
import json

import pytest

from case_files import load_case
from gateway_setup import authorised_client


def _post(client, body, content_type="application/json", path="/cases"):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type=content_type)


def _issues(response) -> list[tuple[str, str]]:
    body = response.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    assert response.mimetype == "application/fhir+json"
    return [(i["expression"][0], i["diagnostics"]) for i in body["issue"]]


@pytest.fixture
def case():
    return load_case("case2-insulinoma")


def test_wrong_types_are_rejected_with_their_paths(client, case):
    case["patient"]["ageAtPresentation"]["value"] = "sixty-eight"
    case["procedures"][1]["sessions"] = {"count": "two"}
    response = _post(client, case)
    assert response.status_code == 400
    paths = [p for p, _ in _issues(response)]
    assert "$.patient.ageAtPresentation.value" in paths and "$.procedures[1].sessions.count" in paths


def test_unknown_enum_values_are_rejected(client, case):
    case["patient"]["sex"] = "woman"
    case["conditions"][0]["role"] = "tumour"
    response = _post(client, case)
    assert response.status_code == 400
    assert {"$.patient.sex", "$.conditions[0].role"} <= {p for p, _ in _issues(response)}


def test_unknown_concept_keys_are_rejected_not_invented(client, case):
    case["procedures"][0]["concept"] = "whipple-procedure"
    case["medications"][0]["agents"][0]["concept"] = "made-up-drug"
    response = _post(client, case)
    assert response.status_code == 422
    issues = dict(_issues(response))
    assert "unknown concept key 'whipple-procedure'" in issues["$.procedures[0].concept"]
    assert "$.medications[0].agents[0].concept" in issues


def test_reference_to_a_missing_fact_is_rejected(client, case):
    case["procedures"][1]["time"] = {"after": "no-such-event", "offset": {"value": 2, "unit": "a"}}
    response = _post(client, case)
    assert response.status_code == 422
    assert any("no-such-event" in m for _, m in _issues(response))


def test_timeline_cycle_is_rejected(client, case):
    case["procedures"][0]["time"] = {"after": "liver-resection-iii"}
    response = _post(client, case)
    assert response.status_code == 422
    assert any("cycle" in m for _, m in _issues(response))


def test_event_before_birth_is_rejected(client, case):
    case["procedures"][0]["time"] = {"before": "presentation", "offset": {"value": 70, "unit": "a"}}
    response = _post(client, case)
    assert response.status_code == 422
    assert ("$.procedures[0].time", "this time falls before the patient's birth") in _issues(response)


def test_event_after_death_is_rejected(client, case):
    case["observations"][0]["time"] = {"after": "death", "offset": {"value": 1, "unit": "mo"}}
    response = _post(client, case)
    assert response.status_code == 422
    assert ("$.observations[0].time", "this time falls after the patient's death") in _issues(response)


def test_duplicate_fact_ids_are_rejected(client, case):
    case["observations"][1]["id"] = case["observations"][0]["id"]
    response = _post(client, case)
    assert response.status_code == 422
    assert any("duplicate fact id" in m for _, m in _issues(response))


def test_oversized_payload_gives_413(app, case):
    app.config["MAX_CONTENT_LENGTH"] = 2000
    response = _post(authorised_client(app), case)
    assert response.status_code == 413
    assert "larger than the limit" in _issues(response)[0][1]


@pytest.mark.parametrize("body,content_type,status", [
    ("{not json", "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    ("", "application/json", 400),
    ("[1, 2]", "application/json", 400),
    ("caseId=x", "text/plain", 415),
])
def test_non_json_bodies_get_operation_outcome(client, body, content_type, status):
    response = _post(client, body, content_type)
    assert response.status_code == status
    assert _issues(response)


def test_validate_endpoint_reports_problems_without_mapping(client, case):
    bad = copy.deepcopy(case)
    bad["patient"]["sex"] = "x"
    assert _post(client, bad, path="/cases/$validate").status_code == 400
    ok = _post(client, case, path="/cases/$validate")
    assert ok.status_code == 200 and ok.get_json()["issue"][0]["severity"] == "information"


def test_unknown_route_and_method_give_operation_outcome(client):
    assert _post(client, {}, path="/no/such/route/here").status_code == 404
    response = client.put("/cases")
    assert response.status_code == 405 and _issues(response)
