"""The cached $everything bundle: ETag and 304, hits serve stored bytes, every write invalidates, never stale."""
from __future__ import annotations

import datetime
import json
import time

import pytest
import redis
import requests

from bundles import stored_patient_id
from case_files import load_case
from gateway_setup import TEST_API_KEY
from live_gateway import live_gateway
from mappings.case_bundle import case_to_bundle



def _store_case(client, name="case1-vipoma") -> str:
    response = client.post("/Bundle", data=json.dumps(case_to_bundle(load_case(name))), content_type="application/fhir+json")
    return stored_patient_id(response.get_json())


def _add_observation(client, pid: str, text: str):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": text}, "subject": {"reference": f"Patient/{pid}"}},
        "request": {"method": "POST", "url": "Observation"}}]}
    return client.post("/Bundle", data=json.dumps(bundle), content_type="application/fhir+json")


def test_second_read_is_a_cache_hit_with_the_same_bytes_and_etag(client):
    pid = _store_case(client)
    first, second = client.get(f"/Patient/{pid}/$everything"), client.get(f"/Patient/{pid}/$everything")
    assert first.headers["X-Cache"] == "miss" and second.headers["X-Cache"] == "hit"
    assert first.data == second.data and first.headers["ETag"] == second.headers["ETag"]


def test_cache_hit_serves_the_stored_bytes_without_rebuilding(client, redis_client):
    pid = _store_case(client)
    client.get(f"/Patient/{pid}/$everything")
    (key,) = [k for k in redis_client.keys(f"cache:{{{pid}}}:*") if not k.endswith(b":variants")]
    marker = b'{"resourceType":"Bundle","type":"searchset","total":0,"entry":[],"marker":"from-cache"}'
    redis_client.set(key, marker)
    assert client.get(f"/Patient/{pid}/$everything").data == marker


def test_if_none_match_gives_304_until_a_write(client):
    pid = _store_case(client)
    etag = client.get(f"/Patient/{pid}/$everything").headers["ETag"]
    assert client.get(f"/Patient/{pid}/$everything", headers={"If-None-Match": etag}).status_code == 304
    _add_observation(client, pid, "new lab")
    after = client.get(f"/Patient/{pid}/$everything", headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["ETag"] != etag


def test_a_write_invalidates_exactly_that_patients_cache(client):
    pid1, pid2 = _store_case(client, "case1-vipoma"), _store_case(client, "case2-insulinoma")
    for pid in (pid1, pid2):
        client.get(f"/Patient/{pid}/$everything")
    _add_observation(client, pid1, "new lab")
    first = client.get(f"/Patient/{pid1}/$everything")
    assert first.headers["X-Cache"] == "miss" and "new lab" in first.get_data(as_text=True)
    assert client.get(f"/Patient/{pid2}/$everything").headers["X-Cache"] == "hit"


def test_no_stale_read_after_an_acknowledged_write(client):
    pid = _store_case(client)
    for i in range(20):
        client.get(f"/Patient/{pid}/$everything")
        assert _add_observation(client, pid, f"lab {i}").status_code == 200
        assert f"lab {i}" in client.get(f"/Patient/{pid}/$everything?_count=1000").get_data(as_text=True)


def test_since_type_and_count_with_next_links(client):
    pid = _store_case(client, "case2-insulinoma")
    everything = client.get(f"/Patient/{pid}/$everything?_count=1000").get_json()
    total = everything["total"]
    seen, url = [], f"/Patient/{pid}/$everything?_count=7"
    while url:
        page = client.get(url).get_json()
        seen += [e["resource"]["id"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0].replace("http://localhost", "") if nxt else None
    assert len(seen) == total == len(set(seen))
    procedures = client.get(f"/Patient/{pid}/$everything?_type=Procedure,Patient").get_json()
    assert {e["resource"]["resourceType"] for e in procedures["entry"]} == {"Procedure", "Patient"}
    time.sleep(0.01)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    time.sleep(0.01)
    _add_observation(client, pid, "after stamp")
    since = client.get(f"/Patient/{pid}/$everything", query_string={"_since": stamp}).get_json()
    assert since["total"] == 1 and since["entry"][0]["resource"]["code"]["text"] == "after stamp"


def test_bad_everything_parameters_get_operation_outcome(client):
    pid = _store_case(client)
    assert client.get(f"/Patient/{pid}/$everything?_since=yesterday").status_code == 400
    assert client.get(f"/Patient/{pid}/$everything?_count=-1").status_code == 400
    assert client.get(f"/Patient/{pid}/$everything?foo=1").status_code == 400
    assert client.get("/Patient/nobody/$everything").status_code == 404


@pytest.fixture
def two_gateways(redis_url, redis_client):
    with live_gateway(redis_url) as first, live_gateway(redis_url) as second:
        yield first, second


def test_two_gateway_processes_sharing_redis_never_serve_stale_bundles(two_gateways):
    a, b = (requests.Session() for _ in range(2))
    for session in (a, b):
        session.headers["X-API-Key"] = TEST_API_KEY
    url_a, url_b = two_gateways
    headers = {"Content-Type": "application/fhir+json"}
    response = a.post(f"{url_a}/Bundle", data=json.dumps(case_to_bundle(load_case("case1-vipoma"))), headers=headers)
    pid = stored_patient_id(response.json())
    for i in range(10):
        writer, reader = ((a, url_a), (b, url_b)) if i % 2 else ((b, url_b), (a, url_a))
        reader[0].get(f"{reader[1]}/Patient/{pid}/$everything?_count=1000")  # warm the reader's cache
        obs = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {
            "resourceType": "Observation", "status": "final", "code": {"text": f"lab {i}"}, "subject": {"reference": f"Patient/{pid}"}},
            "request": {"method": "POST", "url": "Observation"}}]}
        assert writer[0].post(f"{writer[1]}/Bundle", data=json.dumps(obs), headers=headers).status_code == 200
        assert f"lab {i}" in reader[0].get(f"{reader[1]}/Patient/{pid}/$everything?_count=1000").text


def test_the_lookup_batch_answers_as_a_pipeline_does_with_error_replies_in_place(redis_client):
    from store import patient_cache

    redis_client.set("cache-test:body", b"bytes")
    answers = []
    for batch in (patient_cache._batch(redis_client), redis_client.pipeline(transaction=False)):
        batch.incr("cache-test:count")
        batch.expire("cache-test:count", 61)
        batch.evalsha("0" * 40, 1, "cache-test:missing")  # no such script: an error reply, returned in its place
        batch.get("cache-test:body")
        answers.append(batch.execute(raise_on_error=False))
    assert isinstance(patient_cache._batch(redis_client), patient_cache._Batch)  # a plain client takes the batch
    (count, expire, error, body), (count2, expire2, error2, body2) = answers
    assert (count, count2) == (1, 2) and bool(expire) and bool(expire2) and body == body2 == b"bytes"
    assert isinstance(error, redis.exceptions.NoScriptError) and isinstance(error2, redis.exceptions.NoScriptError)


def test_the_lookup_batch_is_served_on_a_fresh_connection_after_redis_dropped_one(redis_url, redis_client):
    from store import patient_cache

    client = redis.Redis.from_url(redis_url)
    client.set("cache-test:body", b"bytes")

    def fetch() -> list:
        batch = patient_cache._batch(client)
        batch.get("cache-test:body")
        return batch.execute(raise_on_error=False)

    assert fetch() == [b"bytes"]
    own = patient_cache._thread_connections.by_pool[client.connection_pool]  # this thread's connection
    own.send_command("CLIENT", "ID")
    redis_client.client_kill_filter(_id=own.read_response())  # the server closes it
    assert fetch() == [b"bytes"]
    assert fetch() == [b"bytes"]


def test_remembered_everything_queries_answer_as_worked_out_and_bad_ones_fail_every_time(client):
    from service import patients

    pid = _store_case(client)
    for _ in range(2):  # the second round is answered from the remembered queries
        assert client.get(f"/Patient/{pid}/$everything?_count=0").status_code == 400
        assert client.get(f"/Patient/{pid}/$everything?_type=Nonsense").status_code == 400
        page = client.get(f"/Patient/{pid}/$everything?_count=2&_type=Observation,Patient")
        assert page.status_code == 200 and len(page.get_json()["entry"]) == 2
    assert not any(b"_count=0" in query or b"Nonsense" in query for _, query in patients._queries)
    # The same parameters spelled differently select the same cached view.
    one = client.get(f"/Patient/{pid}/$everything?_type=Patient,Observation&_count=2").headers["ETag"]
    assert one == page.headers["ETag"]
