"""Benchmark 3 (store): transaction ingest through the gateway against "parse + fhir.resources validation alone".

Same run, same bundle texts, measured alternately bundle by bundle:
  baseline  json.loads of the Bundle text, then fhir.resources `model_validate` of every entry's resource;
  ingest    POST /Bundle through the gateway app (Flask test client, API key, rate limiter, audit): parse,
            plan and validate, then the one database transaction (resources, versions, search-index rows,
            patient_state), the audit row and the treatment-lines enqueue (target: ingest >= 0.6 x baseline).
Two sets: the seed cases' Bundles (case_to_bundle: conditional PUTs by identifier, 34-37 entries; every round
gets fresh identifiers, so each is a real create) and Synthea-shaped Bundles (POSTs with urn:uuid fullUrls and
references, ~150 entries; codes from mappings/terminology). Both engines: a fresh SQLite file and a fresh
database on the PostgreSQL of TEST_POSTGRES_URL (dropped at the end).
Run: .venv/bin/python bench/ingest.py [--rounds 20] [--engines sqlite,postgresql] [--db 8]
(needs Redis: an empty database, flushed at the end)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import redis

from mappings import terminology
from mappings.case_bundle import case_to_bundle
from mappings.fhir_validation import model_class
from service import create_app
from service.auth import key_hash
from store import db

SEED_CASES = ("case1-vipoma", "case2-insulinoma")
KEY = "bench-ingest-key"
# (terminology key, UCUM unit as reported, low, high) of the labs in a Synthea-shaped record.
LABS = (("potassium-serum", "mEq/L", 2.8, 5.2), ("chromogranin-a-serum-moles", "pmol/L", 20, 900),
        ("insulin-serum", "pmol/L", 10, 400), ("body-weight", "kg", 48, 96))
CONDITIONS = ("pancreatic-net", "liver-metastasis", "diarrhoea", "hypokalaemia")
PROCEDURES = ("partial-pancreatectomy", "selective-arterial-embolization", "radiofrequency-ablation")
DRUGS = ("octreotide", "lanreotide", "everolimus", "capecitabine", "temozolomide")


# -- the bundles ---------------------------------------------------------------------------------------------
def seed_bundle(name: str, round_no: int) -> str:
    case = json.loads((ROOT / "tests" / "data" / name / "input.json").read_text(encoding="utf-8"))
    case["caseId"] = f"{case['caseId']}-bench-{round_no}"  # fresh identifiers: a create, not a replay
    return json.dumps(case_to_bundle(case))


def _ucum(unit: str) -> str:
    found = terminology.ucum(unit)
    if found is None:
        raise KeyError(f"{unit!r} is not in mappings/terminology/ucum.csv")
    return found["code"]


def _entry(resource: dict) -> dict:
    full_url = f"urn:uuid:{uuid.uuid4()}"
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def synthea_bundle(rng: random.Random, labs_per_visit: int = 4, visits: int = 30) -> str:
    """One patient's record shaped like Synthea's output: a transaction of POSTs joined by urn:uuid references."""
    patient = _entry({"resourceType": "Patient", "gender": rng.choice(("female", "male")),
                      "birthDate": f"{rng.randint(1940, 1990)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                      "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": str(uuid.uuid4())}],
                      "name": [{"use": "official", "family": f"Family{rng.randint(1, 999)}", "given": ["Given"]}]})
    subject = {"reference": patient["fullUrl"]}
    entries = [patient]
    for key in CONDITIONS:
        entries.append(_entry({"resourceType": "Condition", "subject": subject, "code": terminology.concept(key),
                               "clinicalStatus": terminology.concept("clinical-active"),
                               "onsetDateTime": f"20{rng.randint(10, 19)}-0{rng.randint(1, 9)}-15"}))
    for visit in range(visits):
        when = f"20{10 + visit // 4}-{1 + 3 * (visit % 4):02d}-0{rng.randint(1, 9)}T09:00:00Z"
        for key, unit, low, high in LABS[:labs_per_visit]:
            entries.append(_entry({"resourceType": "Observation", "status": "final", "subject": subject,
                                   "category": [terminology.concept("category-laboratory")], "code": terminology.concept(key),
                                   "effectiveDateTime": when,
                                   "valueQuantity": {"value": round(rng.uniform(low, high), 1), "unit": unit,
                                                     "system": "http://unitsofmeasure.org", "code": _ucum(unit)}}))
    for key in PROCEDURES:
        entries.append(_entry({"resourceType": "Procedure", "status": "completed", "subject": subject,
                               "code": terminology.concept(key), "performedDateTime": f"20{rng.randint(12, 19)}-06-01"}))
    for key in DRUGS:
        entries.append(_entry({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": subject,
                               "medicationCodeableConcept": terminology.concept(key), "authoredOn": f"20{rng.randint(12, 19)}-07-01"}))
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


# -- what is timed ---------------------------------------------------------------------------------------------
def validate_alone(text: str) -> int:
    bundle = json.loads(text)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        model_class(resource["resourceType"]).model_validate(resource)
    return len(bundle["entry"])


@contextlib.contextmanager
def database(engine: str) -> Iterator[str]:
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
            url = f"sqlite:///{folder}/gateway.sqlite3"
            db.engine_for(url)
            yield url
        return
    from databases import create_postgres_database, drop_postgres_database

    url = create_postgres_database("bench")
    db.engine_for(url)
    try:
        yield url
    finally:
        db.engine_for(url).dispose()
        drop_postgres_database(url)


def gateway_poster(redis_url: str, database_url: str) -> Callable[[str], int]:
    app = create_app({"REDIS_URL": redis_url, "DATABASE_URL": database_url, "RATE_LIMIT": "100000000/minute",
                      "API_KEYS": json.dumps([{"client": "bench", "sha256": key_hash(KEY), "scopes": ["system/*.write", "system/*.read"]}])})
    client = app.test_client()

    def post(text: str) -> int:
        answer = client.post("/Bundle", data=text, headers={"X-API-Key": KEY, "Content-Type": "application/fhir+json"})
        if answer.status_code != 200:
            raise RuntimeError(answer.get_data(as_text=True)[:800])
        return len(answer.get_json()["entry"])

    return post


def timed(work: Callable[[str], int], text: str) -> tuple[float, int]:
    start = time.perf_counter()
    count = work(text)
    return time.perf_counter() - start, count


def measure(name: str, bundles: list[str], post: Callable[[str], int]) -> float:
    """Alternately, bundle by bundle: validation alone, then ingest of the same text. Prints and returns the ratio."""
    for text in bundles[:2]:  # warm-up: imports, model classes, prepared statements
        validate_alone(text)
    spent = {"baseline": 0.0, "ingest": 0.0}
    resources = 0
    for text in bundles[2:]:
        elapsed, count = timed(validate_alone, text)
        spent["baseline"] += elapsed
        elapsed, _ = timed(post, text)
        spent["ingest"] += elapsed
        resources += count
    rates = {k: resources / v for k, v in spent.items()}
    ratio = rates["ingest"] / rates["baseline"]
    print(f"  {name:28s} validation alone {rates['baseline']:7.0f} res/s   ingest {rates['ingest']:7.0f} res/s   "
          f"ingest / validation {ratio:.2f} (target >= 0.6)   [{len(bundles) - 2} bundles, {resources} resources]", flush=True)
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20, help="bundles of each set (the first 2 warm up)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--db", type=int, default=8, help="an empty Redis database; flushed at the end")
    args = parser.parse_args()
    redis_url = f"redis://127.0.0.1:6379/{args.db}"
    client = redis.Redis.from_url(redis_url)
    if client.dbsize():
        sys.exit(f"Redis db {args.db} is not empty; pick an empty one with --db")
    rng = random.Random(7)
    try:
        for engine in args.engines.split(","):
            with database(engine) as url:
                post = gateway_poster(redis_url, url)
                post(seed_bundle(SEED_CASES[0], -1))  # first write: migrations checked, engine connected
                print(f"{engine}:")
                measure("seed cases", [seed_bundle(SEED_CASES[i % 2], i) for i in range(args.rounds)], post)
                measure("Synthea-shaped", [synthea_bundle(rng) for _ in range(args.rounds)], post)
    finally:
        client.flushdb()


if __name__ == "__main__":
    main()
