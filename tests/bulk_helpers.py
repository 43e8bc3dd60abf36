"""The vendored Synthea slice (tests/data/bulk/) and the steps of a bulk import, shared by the import and export tests."""
from __future__ import annotations

import collections
import json
from pathlib import Path

from gateway_setup import api_keys_config, authorised_client, gateway_config
from sync_helpers import run_jobs

from mappings.references import identifier_token

CORPUS = Path(__file__).parent / "data" / "bulk" / "synthea-4-patients"
NPI = "http://hl7.org/fhir/sid/us-npi"


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.ndjson"))


def corpus_lines() -> list[str]:
    return [line for path in corpus_files() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def corpus_counts() -> dict[str, int]:
    return dict(collections.Counter(json.loads(line)["resourceType"] for line in corpus_lines()))


def identifier_map() -> dict[str, str]:
    """`Type?identifier=system|value` -> `Type/id` from the corpus's Practitioner, Location and Organization lines."""
    found = {}
    for line in corpus_lines():
        r = json.loads(line)
        if r["resourceType"] in ("Practitioner", "Location", "Organization"):
            for ident in r.get("identifier", []):
                found[f"{r['resourceType']}?identifier={identifier_token(ident)}"] = f"{r['resourceType']}/{r['id']}"
    return found


def start_import(client, body: str, name: str = "upload.ndjson") -> str:
    answer = client.post(f"/$import?name={name}", data=body.encode("utf-8"), content_type="application/fhir+ndjson",
                         headers={"Prefer": "respond-async"})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    location = answer.headers["Content-Location"]
    assert "/$import/" in location
    return location.split("/$import/", 1)[1]


def finished_import(client, redis_client, job_id: str) -> dict:
    run_jobs(redis_client)
    answer = client.get(f"/$import/{job_id}")
    assert answer.status_code == 200, (answer.status_code, answer.headers)
    return answer.get_json()


def two_clients(redis_url: str, sqlite_url: str, scopes: list[str]):
    """The test suite's client and a second one ("other") of the same gateway, with `scopes`."""
    from service import create_app
    from service.auth import key_hash

    keys = json.loads(api_keys_config()) + [{"client": "other", "sha256": key_hash("other-key"), "scopes": scopes}]
    app = create_app(gateway_config(redis_url, sqlite_url, API_KEYS=json.dumps(keys)))
    other = app.test_client()
    other.environ_base["HTTP_X_API_KEY"] = "other-key"
    return authorised_client(app), other
