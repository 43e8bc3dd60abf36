"""The operator's views: API reference, queue dashboard, metrics and structured request logs."""
from __future__ import annotations

import json
import logging

from bundles import stored_patient_id
from case_files import load_case
from service.logs import JsonFormatter


def test_api_reference_is_served_from_the_package_without_external_urls(client):
    page = client.get("/docs/").get_data(as_text=True)
    assert "/openapi.yaml" in page and "swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200


def test_queue_dashboard_lists_queues(client):
    assert client.get("/rq/").status_code == 200
    assert client.get("/rq/0/data/queues.json").status_code == 200


def test_metrics_count_requests_and_cache_results(client):
    stored = client.post("/cases?store=true", data=json.dumps(load_case("case1-vipoma")), content_type="application/json")
    pid = stored_patient_id(stored.get_json())
    for _ in range(2):
        client.get(f"/Patient/{pid}/$everything")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'gateway_requests_total{method="GET",route="/Patient/<pid>/$everything",status="200"}' in text
    assert 'gateway_patient_cache_total{result="hit"}' in text and "gateway_request_seconds_bucket" in text


def test_request_log_is_one_json_line_with_request_id_and_no_path(client, caplog):
    caplog.set_level(logging.INFO, logger="gateway.request")
    response = client.get("/Patient/some-patient-id/$everything", headers={"X-Request-ID": "req-abcdef12"})
    assert response.headers["X-Request-ID"] == "req-abcdef12"
    (record,) = [r for r in caplog.records if r.name == "gateway.request"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-abcdef12" and line["route"] == "/Patient/<pid>/$everything" and line["status"] == 404
    assert "some-patient-id" not in json.dumps(line)
