"""Summaries on the request path (issue 15 'cheap reads that cost minutes'): computed once per patient at a time,
capped by compartment size, and a request that would wait too long gets 503 with Retry-After."""
from __future__ import annotations

import json
import threading

import pytest

from summaries import line_summary as summaries


def _store(client) -> str:
    from case_files import load_case

    answer = client.post("/cases?store=true", data=json.dumps(load_case("case2-insulinoma")), content_type="application/json")
    assert answer.status_code == 200
    return next(e["response"]["location"] for e in answer.get_json()["entry"]
                if e["response"]["location"].startswith("Patient/")).split("/")[1]


def test_concurrent_cold_reads_compute_the_summary_once(client, monkeypatch):
    pid = _store(client)
    calls = []
    real = summaries.summarise

    def counted(resources):
        calls.append(1)
        return real(resources)

    monkeypatch.setattr(summaries, "summarise", counted)
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(client.get(f"/Patient/{pid}/treatment-lines").status_code))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 6
    assert len(calls) == 1


def test_a_compartment_over_the_cap_is_refused_not_summarised(client, monkeypatch):
    pid = _store(client)
    monkeypatch.setattr(summaries, "MAX_SUMMARY_RESOURCES", 5)
    response = client.get(f"/Patient/{pid}/treatment-lines")
    assert response.status_code == 422
    assert response.get_json()["issue"][0]["code"] == "too-costly"


def test_a_summary_held_by_another_process_too_long_answers_503(client, redis_client, monkeypatch):
    pid = _store(client)
    monkeypatch.setattr(summaries, "WAIT_SECONDS", 0.3)
    redis_client.set(f"lock:{{{pid}}}:summary", "another-process", ex=30)
    response = client.get(f"/Patient/{pid}/timeline")
    assert response.status_code == 503 and response.headers["Retry-After"]
    redis_client.delete(f"lock:{{{pid}}}:summary")
    assert client.get(f"/Patient/{pid}/timeline").status_code == 200


@pytest.mark.parametrize("path", ["treatment-lines", "timeline"])
def test_a_second_view_is_served_from_the_cache(client, monkeypatch, path):
    pid = _store(client)
    assert client.get(f"/Patient/{pid}/{path}").status_code == 200
    monkeypatch.setattr(summaries, "summarise", lambda resources: pytest.fail("recomputed on a cached view"))
    assert client.get(f"/Patient/{pid}/{path}").status_code == 200
