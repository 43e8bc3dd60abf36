"""Conditional references (`Practitioner?identifier=system|value`) follow the R4 rule wherever they are written:
one match resolves, none fails, several fail with 412, and a match written earlier in the same import or
transaction counts (store/conditional.py resolves them together and forgets an answer a write could change)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from store import bulk
from store.bundle_plan import plan_bundle
from store.writes import LENIENT, TransactionFailed, apply_entries

NPI = "http://hl7.org/fhir/sid/us-npi"


def practitioner(rid: str, npi: str) -> dict:
    return {"resourceType": "Practitioner", "id": rid, "identifier": [{"system": NPI, "value": npi}],
            "name": [{"family": rid}]}


def encounter(rid: str, npi: str) -> dict:
    return {"resourceType": "Encounter", "id": rid, "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|{npi}"}}]}


def run_import(engine, tmp_path: Path, lines: list[dict], chunk: int, monkeypatch) -> tuple[dict, Path]:
    monkeypatch.setenv("GATEWAY_BULK_CHUNK", str(chunk))
    source = tmp_path / "input.ndjson"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    # One input named so that it is read in the order written (no reordering of reference targets first).
    state = bulk.new_state([("mixed.ndjson", source)], LENIENT)
    bulk.ImportRun(engine, tmp_path / "result", state).run()
    return state, tmp_path / "result"


def stored_reference(engine, rid: str) -> str:
    from sqlalchemy import select

    from store.schema import resources

    with engine.connect() as conn:
        body = conn.execute(select(resources.c.body).where(resources.c.res_type == "Encounter",
                                                           resources.c.res_id == rid)).scalar_one()
    return json.loads(body)["participant"][0]["individual"]["reference"]


@pytest.mark.parametrize("chunk", [1, 500], ids=["a chunk per line", "one chunk"])
def test_an_import_fails_a_conditional_reference_once_a_second_resource_with_its_identifier_was_imported(
        db_engine, tmp_path, monkeypatch, chunk):
    lines = [practitioner("first", "111"), encounter("before", "111"),
             practitioner("second", "111"), encounter("after", "111")]
    state, results = run_import(db_engine, tmp_path, lines, chunk, monkeypatch)
    assert state["counts"] == {"Practitioner": 2, "Encounter": 1} and state["errors"] == {"Encounter": 1}
    assert stored_reference(db_engine, "before") == "Practitioner/first"
    outcome = json.loads((results / "error.Encounter.ndjson").read_text().splitlines()[0])
    assert outcome["issue"][0]["expression"] == ["mixed.ndjson:4"]
    assert any(i["code"] == "multiple-matches" and "more than one resource" in i["diagnostics"] for i in outcome["issue"])


def test_an_import_resolves_a_conditional_reference_to_a_practitioner_imported_in_the_same_chunk(
        db_engine, tmp_path, monkeypatch):
    lines = [encounter("early", "222"), practitioner("p222", "222"), encounter("late", "222")]
    state, _ = run_import(db_engine, tmp_path, lines, 500, monkeypatch)
    # The first Encounter came before its Practitioner: deferred to the second pass, then resolved.
    assert state["counts"] == {"Practitioner": 1, "Encounter": 2} and state["errors"] == {}
    assert stored_reference(db_engine, "early") == stored_reference(db_engine, "late") == "Practitioner/p222"


def transaction(*resources: dict) -> list:
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]
    _, planned = plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": entries}, 100)
    assert not any(p.issues for p in planned)
    return planned


def test_a_transaction_fails_with_412_when_an_earlier_entry_adds_a_second_match_for_its_conditional_reference(db_engine):
    apply_entries(db_engine, transaction(practitioner("held", "333")), policy=LENIENT)
    with pytest.raises(TransactionFailed) as failed:
        apply_entries(db_engine, transaction(encounter("e1", "333"), practitioner("new", "333"), encounter("e2", "333")),
                      policy=LENIENT)
    assert failed.value.status == 412
    assert [i.path for i in failed.value.issues] == ["Bundle.entry[2]"]


def test_entries_of_one_transaction_naming_one_practitioner_resolve_to_it(db_engine):
    outcomes = apply_entries(db_engine, transaction(practitioner("only", "444"), encounter("a", "444"), encounter("b", "444")),
                             policy=LENIENT)
    assert [o.status for o in outcomes] == ["201 Created"] * 3
    assert stored_reference(db_engine, "a") == stored_reference(db_engine, "b") == "Practitioner/only"
