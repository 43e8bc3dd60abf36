"""Issue 15, "a refused-request flood writes one audit row per request": every 401/403/429 stays on the audit
trail, but a caller's refusals beyond the first few of a window share one aggregate row, so the table grows per
caller and window, not per request. On both engines."""
from __future__ import annotations

import json
import time

import pytest
from gateway_setup import TEST_API_KEY, TEST_SCOPES, gateway_config

from mappings.fhir_validation import resource_issues
from service.auth import key_hash
from store.audit_log import events

READER_KEY = "reader-key"


@pytest.fixture
def make_app(redis_url, redis_client, db_engine, database_url):
    from service import create_app

    keys = json.dumps([{"client": "test-suite", "sha256": key_hash(TEST_API_KEY), "scopes": TEST_SCOPES},
                       {"client": "reader", "sha256": key_hash(READER_KEY), "scopes": ["system/*.read"]}])

    def make(**config):
        return create_app(gateway_config(redis_url, database_url, API_KEYS=keys, **config))
    return make


def _refused(app, client: str | None = None) -> list[dict]:
    """The refusals on the trail (read through the API, as an operator does), oldest first."""
    listed = app.test_client().get("/AuditEvent?_count=1000", headers={"X-API-Key": TEST_API_KEY})
    assert listed.status_code == 200
    found = [e["resource"] for e in listed.get_json()["entry"] if e["resource"]["outcome"] != "0"]
    return [e for e in reversed(found) if client is None or e["agent"][0]["who"]["identifier"]["value"] == client]


def _counted(event: dict) -> int:
    detail = {d["type"]: d["valueString"] for d in event["entity"][-1].get("detail", [])}
    return int(detail.get("refusals", 1))


def test_a_flood_of_failed_authentications_costs_a_few_rows_and_every_request_is_counted(make_app):
    app = make_app(AUTH_FAILURE_LIMIT="20/minute")
    attacker = app.test_client()
    statuses = [attacker.get("/Patient/p-1/$everything", headers={"X-API-Key": f"guess-{n}"},
                             environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code for n in range(300)]
    assert statuses == [401] * 20 + [429] * 280
    refused = _refused(app, "anonymous")
    by_status = {s: [e for e in refused if e["outcomeDesc"] == f"HTTP {s}"] for s in (401, 429)}
    # 10 rows one by one per status, then one aggregate each: 22 rows for 300 requests (300 before).
    assert [len(by_status[401]), len(by_status[429])] == [11, 11]
    assert [sum(map(_counted, by_status[s])) for s in (401, 429)] == [20, 280]
    aggregate = by_status[429][-1]
    assert _counted(aggregate) == 270 and aggregate["period"]["start"] <= aggregate["period"]["end"]
    assert aggregate["agent"][0]["network"] == {"address": "203.0.113.9", "type": "2"}
    assert {"reference": "Patient/p-1"} in [e["what"] for e in aggregate["entity"]]
    assert aggregate["entity"][-1]["description"] == "270 refused requests (HTTP 429): GET /Patient/<pid>/$everything ×270"
    assert resource_issues(aggregate) == []


def test_refusals_of_an_authenticated_client_are_aggregated_per_client(make_app):
    app = make_app(AUDIT_REFUSALS_PER_WINDOW=2)
    reader = app.test_client()
    for path in ["/AuditEvent", "/metrics"] * 5:
        assert reader.get(path, headers={"X-API-Key": READER_KEY}).status_code == 403
    refused = _refused(app, "reader")
    assert [_counted(e) for e in refused] == [1, 1, 8]
    assert refused[-1]["entity"][-1]["description"] == "8 refused requests (HTTP 403): GET /AuditEvent ×4, GET /metrics ×4"


def test_each_address_is_a_caller_of_its_own(make_app):
    app = make_app(AUDIT_REFUSALS_PER_WINDOW=3)
    client = app.test_client()
    for address in ("198.51.100.1", "198.51.100.2"):
        for _ in range(5):
            client.get("/Procedure", headers={"X-API-Key": "wrong"}, environ_base={"REMOTE_ADDR": address})
    refused = _refused(app, "anonymous")
    for address in ("198.51.100.1", "198.51.100.2"):
        mine = [e for e in refused if e["agent"][0]["network"]["address"] == address]
        assert [_counted(e) for e in mine] == [1, 1, 1, 2]


def test_aggregates_are_written_when_the_window_ends_without_anyone_listing_the_trail(make_app):
    app = make_app(AUDIT_REFUSAL_WINDOW=0.5, AUDIT_REFUSALS_PER_WINDOW=2)
    client = app.test_client()
    for _ in range(7):
        client.get("/Procedure", headers={"X-API-Key": "wrong"}, environ_base={"REMOTE_ADDR": "192.0.2.77"})
    engine = app.extensions["store"]
    deadline = time.monotonic() + 10
    counts: list[int] = []
    while time.monotonic() < deadline:
        counts = [_counted(e) for e in reversed(events(engine, None, 100, 0)[0])]
        if sum(counts) == 7:
            break
        time.sleep(0.1)
    assert counts == [1, 1, 5]  # the timer thread wrote the aggregate of the ended window


def test_callers_beyond_the_tracked_number_share_one_row_per_status(make_app):
    app = make_app(AUDIT_REFUSAL_CALLERS=5, AUDIT_REFUSALS_PER_WINDOW=1, AUTH_FAILURE_LIMIT="1000/minute")
    client = app.test_client()
    for n in range(50):  # a spray from many addresses
        for _ in range(3):
            client.get("/Procedure", headers={"X-API-Key": "wrong"}, environ_base={"REMOTE_ADDR": f"10.9.0.{n}"})
    refused = _refused(app)
    assert len(refused) == 11 and sum(map(_counted, refused)) == 150  # 5 + 5 aggregates of 2 + one of the other 135
    overflow = next(e for e in refused if "network" not in e["agent"][0])
    assert _counted(overflow) == 135
    assert {"type": "addresses", "valueString": "45"} in overflow["entity"][-1]["detail"]
    assert resource_issues(overflow) == []
