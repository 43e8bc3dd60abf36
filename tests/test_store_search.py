"""The SQL search engine: index extraction, every parameter type, prefix and modifier, chains, includes, sort,
keyset paging under concurrent writes, lenient handling and errors; on SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
from db_fixture_search import index_count, remove, store
from sqlalchemy import select, text

from mappings.errors import InputError
from mappings.references import identifier_token
from store import indexing
from store.search import (
    SEARCH_MODIFIERS,
    SEARCHABLE,
    match_rows,
    page_statement,
    search,
    supported_parameters,
)

# db_engine (tests/conftest.py): the migrated store on SQLite and on PostgreSQL, emptied per test.
DATA = Path(__file__).parent / "data"
LOINC, SNOMED, RXNORM = "http://loinc.org", "http://snomed.info/sct", "http://www.nlm.nih.gov/research/umls/rxnorm"
NPI, MRN = "http://hl7.org/fhir/sid/us-npi", "http://hospital.smarthealthit.org"
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory",
                   "display": "Laboratory"}]}


# -- Synthea-shaped resources (codes from mappings/terminology/) ------------------------------------------------
def patient(pid: str, family: str, given: str, mrn: str, birth: str, gender: str = "female") -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth,
            "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": pid},
                           {"type": {"text": "Medical Record Number"}, "system": MRN, "value": mrn}],
            "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Ms."]}]}


def observation(oid: str, pid: str, code: str, display: str, when: str, **extra) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "category": [LAB],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when, **extra}


def condition(cid: str, pid: str, code: str, display: str, onset: dict) -> dict:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]}, **onset}


@pytest.fixture
def world(db_engine):
    """Two patients, a practitioner, an encounter and their clinical resources."""
    with db_engine.begin() as conn:
        store(conn, patient("pa", "Müller", "Anna", "m-1", "1961-04-12"), "pa")
        store(conn, patient("pb", "Smith", "Bob", "m-2", "1975", "male"), "pb")
        store(conn, {"resourceType": "Practitioner", "id": "dr", "identifier": [{"system": NPI, "value": "9999949399"}],
                     "name": [{"family": "Okafor", "given": ["Ngozi"], "prefix": ["Dr."]}]})
        store(conn, {"resourceType": "Encounter", "id": "enc1", "status": "finished",
                     "subject": {"reference": "Patient/pa"},
                     "participant": [{"individual": {"reference": "Practitioner/dr"}}],
                     "period": {"start": "2019-03-01T09:00:00+01:00", "end": "2019-03-01T10:00:00+01:00"}}, "pa")
        store(conn, observation("glu-a", "pa", "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "2019-03-01",
                                encounter={"reference": "Encounter/enc1"}), "pa")
        store(conn, observation("cga-a", "pa", "9811-1", "Chromogranin A [Mass/volume] in Serum or Plasma",
                                "2020-06-15T08:30:00Z"), "pa")
        store(conn, observation("glu-b", "pb", "2345-7", "Glucose [Mass/volume] in Serum or Plasma",
                                "2021-01-10T12:00:00-05:00"), "pb")
        store(conn, {"resourceType": "Observation", "id": "no-subject", "status": "preliminary",
                     "code": {"text": "free-text only glucose"}})
        store(conn, condition("net-a", "pa", "717919005", "Neuroendocrine tumor of pancreas (disorder)",
                              {"onsetDateTime": "2018-11"}), "pa")
        store(conn, condition("met-a", "pa", "94381002", "Secondary malignant neoplasm of liver (disorder)",
                              {"onsetPeriod": {"start": "2019-02-01"}}), "pa")
        store(conn, condition("hypo-b", "pb", "302866003", "Hypoglycemia",
                              {"onsetAge": {"value": 40, "unit": "years", "system": "http://unitsofmeasure.org",
                                            "code": "a"}}), "pb")
        store(conn, {"resourceType": "MedicationRequest", "id": "mr-a", "status": "active", "intent": "order",
                     "subject": {"reference": "Patient/pa"}, "authoredOn": "2019-04-02T10:00:00Z",
                     "requester": {"reference": "Practitioner/dr"},
                     "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "7617",
                                                               "display": "octreotide"}]}}, "pa")
    return db_engine


def ids(result) -> list[str]:
    return [row["res_id"] for row in result.rows]


def find(engine, rtype: str, *params: tuple[str, str], **kw) -> list[str]:
    with engine.connect() as conn:
        return sorted(ids(search(conn, rtype, list(params), **kw)))


def error_paths(engine, rtype: str, *params: tuple[str, str], **kw) -> list[str]:
    with engine.connect() as conn, pytest.raises(InputError) as caught:
        search(conn, rtype, list(params), **kw)
    assert caught.value.status == 400
    return [issue.path for issue in caught.value.issues]


# -- index extraction ------------------------------------------------------------------------------------------
def test_string_values_are_lower_case_without_accents_and_single_spaced():
    assert indexing.normalise("  Müller   Lüdenscheid\tÉcole ") == "muller ludenscheid ecole"
    assert len(indexing.normalise("x" * 400)) == 255


def test_date_ranges_follow_precision_and_time_zone():
    assert indexing.date_range("2019") == (1546300800000, 1577836799999)
    assert indexing.date_range("2019-02") == (1548979200000, 1551398399999)
    assert indexing.date_range("2019-12-31") == (1577750400000, 1577836799999)
    assert indexing.date_range("2019-03-01T09:00:00+01:00") == (1551427200000, 1551427200999)
    assert indexing.date_range("2019-03-01T08:00:00.250Z") == (1551427200250, 1551427200250)
    assert indexing.date_range("2019-13") is None and indexing.date_range("yesterday") is None


def test_references_index_type_and_id_of_relative_and_absolute_urls_and_skip_contained():
    rows = indexing.index_rows({"resourceType": "Observation", "id": "x", "subject": {"reference": "Patient/p1"},
                                "performer": [{"reference": "http://other.org/fhir/Practitioner/d1/_history/3"},
                                              {"reference": "urn:uuid:5b5d8c0c-0000-4000-8000-000000000001"},
                                              {"reference": "#contained"}]})
    refs = [(row["param"], row["target_type"], row["target_id"], row["target_url"]) for kind, row in rows
            if kind == "reference"]
    # patient (Observation.subject.where(resolve() is Patient)) is answered by the subject rows: none of its own
    assert ("subject", "Patient", "p1", None) in refs and not [r for r in refs if r[0] == "patient"]
    assert indexing.stored_as("Observation", "patient") == (("subject",), "Patient")
    assert ("performer", "Practitioner", "d1", "http://other.org/fhir/Practitioner/d1/_history/3") in refs
    assert ("performer", None, None, "urn:uuid:5b5d8c0c-0000-4000-8000-000000000001") in refs
    assert len([r for r in refs if r[0] == "performer"]) == 2


def test_period_without_end_is_open_and_age_onset_has_no_date_row():
    rows = indexing.index_rows(condition("c", "p", "94381002", "x", {"onsetPeriod": {"start": "2019-02-01"}}))
    assert [(r["low"], r["high"]) for k, r in rows if k == "date"] == [(1548979200000, 2**62)]
    aged = indexing.index_rows(condition("c", "p", "94381002", "x", {"onsetAge": {"value": 40}}))
    assert not [r for k, r in aged if k == "date"]


def test_human_name_parts_and_identifier_type_text_are_indexed():
    rows = indexing.index_rows(patient("p", "Müller", "Anna", "m-1", "1961"))
    names = {(r["param"], r["value_norm"]) for k, r in rows if k == "string"}
    assert {("name", "muller"), ("name", "anna"), ("name", "ms."), ("family", "muller"), ("given", "anna")} <= names
    tokens = {(r["param"], r["system"], r["code"], r["text"]) for k, r in rows if k == "token"}
    assert ("identifier", MRN, "m-1", "medical record number") in tokens


def test_write_index_replaces_old_rows_and_removes_them_on_delete(db_engine):
    with db_engine.begin() as conn:
        pk = store(conn, observation("o", "pa", "2345-7", "Glucose", "2019"), "pa")
        before = index_count(conn, pk)
        store(conn, observation("o", "pa", "9811-1", "Chromogranin A", "2019"), "pa")
        assert index_count(conn, pk) == before
        assert ids(search(conn, "Observation", [("code", "2345-7")])) == []
        remove(conn, "Observation", "o")
        assert index_count(conn, pk) == 0


def test_every_seed_golden_bundle_resource_is_found_by_its_identifier(db_engine):
    for case in ("case1-vipoma", "case2-insulinoma"):
        bundle = json.loads((DATA / case / "expected-bundle.json").read_text(encoding="utf-8"))
        urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'].rsplit(':', 1)[1]}" for e in bundle["entry"]}
        text_bundle = json.dumps(bundle)
        for url, ref in urls.items():
            text_bundle = text_bundle.replace(f'"{url}"', f'"{ref}"')
        entries = json.loads(text_bundle)["entry"]
        pid = next(u.split("/")[1] for u in urls.values() if u.startswith("Patient/"))
        with db_engine.begin() as conn:
            for entry, ref in zip(entries, urls.values()):
                store(conn, {**entry["resource"], "id": ref.split("/")[1]}, pid)
            for entry in entries:
                resource = entry["resource"]
                if "identifier" not in resource:   # Provenance
                    assert ids(search(conn, "Provenance", [("patient", pid)])) != []
                    continue
                ident = resource["identifier"][0]
                found = ids(search(conn, resource["resourceType"], [("identifier", identifier_token(ident))]))
                assert len(found) == 1, (case, ident)
            conditions = search(conn, "Condition", [("patient", pid), ("_summary", "count")])
            assert conditions.total == sum(1 for e in entries if e["resource"]["resourceType"] == "Condition")


# -- parameter types -------------------------------------------------------------------------------------------
def test_token_forms_system_code_bar_code_system_bar_and_code(world):
    assert find(world, "Observation", ("code", f"{LOINC}|2345-7")) == ["glu-a", "glu-b"]
    assert find(world, "Observation", ("code", "2345-7")) == ["glu-a", "glu-b"]
    assert find(world, "Observation", ("code", "|2345-7")) == []
    assert find(world, "Observation", ("code", f"{LOINC}|")) == ["cga-a", "glu-a", "glu-b"]
    assert find(world, "Patient", ("gender", "male")) == ["pb"]


def test_or_by_comma_and_and_by_repetition(world):
    assert find(world, "Observation", ("code", "2345-7,9811-1")) == ["cga-a", "glu-a", "glu-b"]
    assert find(world, "Observation", ("code", "2345-7,9811-1"), ("patient", "pa")) == ["cga-a", "glu-a"]
    assert find(world, "Observation", ("subject", "Patient/pa,Patient/pb"), ("code", "2345-7")) == ["glu-a", "glu-b"]
    assert find(world, "Observation", ("date", "ge2019"), ("date", "lt2021")) == ["cga-a", "glu-a"]


def test_escaped_comma_is_part_of_the_value(world):
    with world.begin() as conn:
        store(conn, {"resourceType": "Patient", "id": "pc", "name": [{"family": "Doe, Jr"}]}, "pc")
    assert find(world, "Patient", ("family:exact", "Doe\\, Jr")) == ["pc"]
    assert find(world, "Patient", ("family:exact", "Doe,Smith")) == ["pb"]


def test_identifier_searches_patients_and_practitioners(world):
    assert find(world, "Patient", ("identifier", f"{MRN}|m-1")) == ["pa"]
    assert find(world, "Practitioner", ("identifier", f"{NPI}|9999949399")) == ["dr"]
    assert find(world, "Patient", ("identifier", "m-2")) == ["pb"]


def test_identifier_text_modifier_reads_the_identifier_type_text(world):
    assert find(world, "Patient", ("identifier:text", "medical record")) == ["pa", "pb"]


def test_string_default_is_prefix_case_and_accent_insensitive(world):
    assert find(world, "Patient", ("family", "MULL")) == ["pa"]
    assert find(world, "Patient", ("name", "anna")) == ["pa"]
    assert find(world, "Patient", ("given", "bo")) == ["pb"]
    assert find(world, "Practitioner", ("name", "okaf")) == ["dr"]


def test_string_exact_and_contains(world):
    assert find(world, "Patient", ("family:exact", "Müller")) == ["pa"]
    assert find(world, "Patient", ("family:exact", "muller")) == []
    assert find(world, "Patient", ("family:contains", "ULLE")) == ["pa"]
    assert find(world, "Patient", ("family", "ulle")) == []


def test_reference_forms_id_relative_absolute_and_type_modifier(world):
    assert find(world, "Observation", ("subject", "pa")) == ["cga-a", "glu-a"]
    assert find(world, "Observation", ("subject", "Patient/pa")) == ["cga-a", "glu-a"]
    assert find(world, "Observation", ("subject", "http://example.org/fhir/Patient/pa")) == ["cga-a", "glu-a"]
    assert find(world, "Observation", ("subject:Patient", "pa")) == ["cga-a", "glu-a"]
    assert find(world, "Observation", ("subject:Group", "pa")) == []
    assert find(world, "Encounter", ("participant", "Practitioner/dr")) == ["enc1"]
    assert find(world, "MedicationRequest", ("requester:Practitioner", "dr")) == ["mr-a"]


def test_patient_parameter_only_matches_references_to_patients(world):
    with world.begin() as conn:
        store(conn, {"resourceType": "Observation", "id": "grp", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": "Group/pa"}})
    assert find(world, "Observation", ("patient", "pa")) == ["cga-a", "glu-a"]
    assert find(world, "Observation", ("subject", "pa")) == ["cga-a", "glu-a", "grp"]


def test_parameters_searched_through_another_parameters_rows_answer_as_with_their_own(world):
    """patient (subject restricted to Patient), combo-code (code | component.code) and Encounter's practitioner
    (participant.individual restricted to Practitioner) store no rows of their own (store.indexing._plan): every
    modifier, chain, include and revinclude answers from the rows of the parameter owning the path."""
    component = {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 120}}
    with world.begin() as conn:
        store(conn, {"resourceType": "Observation", "id": "grp", "status": "final", "code": {"text": "x"},
                     "subject": {"reference": "Group/pa"}, "component": [component]})
        store(conn, {"resourceType": "Observation", "id": "urn", "status": "final", "code": {"text": "y"},
                     "subject": {"reference": "urn:uuid:5b5d8c0c-0000-4000-8000-000000000001"}})
        store(conn, observation("abs", "pb", "2345-7", "Glucose", "2022-01-01",
                                subject={"reference": "http://other.org/fhir/Patient/pb"}, component=[component]), "pb")
    assert find(world, "Observation", ("patient", "pb")) == ["abs", "glu-b"]
    assert find(world, "Observation", ("patient", "Patient/pb")) == ["abs", "glu-b"]
    assert find(world, "Observation", ("patient", "http://other.org/fhir/Patient/pb")) == ["abs", "glu-b"]
    assert find(world, "Observation", ("patient", "Group/pa")) == []
    assert find(world, "Observation", ("patient", "urn:uuid:5b5d8c0c-0000-4000-8000-000000000001")) == []
    assert find(world, "Observation", ("subject", "urn:uuid:5b5d8c0c-0000-4000-8000-000000000001")) == ["urn"]
    assert find(world, "Observation", ("patient:missing", "true")) == ["grp", "no-subject", "urn"]
    assert find(world, "Observation", ("patient:missing", "false")) == ["abs", "cga-a", "glu-a", "glu-b"]
    assert find(world, "Observation", ("patient.family", "smith")) == ["abs", "glu-b"]
    assert find(world, "Observation", ("combo-code", "8480-6")) == ["abs", "grp"]
    assert find(world, "Observation", ("combo-code", f"{LOINC}|2345-7")) == ["abs", "glu-a", "glu-b"]
    assert find(world, "Observation", ("combo-code:missing", "true")) == []   # a code.text alone is a row
    assert find(world, "Observation", ("combo-code:missing", "false")) == find(world, "Observation", ("code:missing", "false"))
    assert find(world, "Observation", ("combo-code:not", "2345-7")) == ["cga-a", "grp", "no-subject", "urn"]
    assert find(world, "Observation", ("combo-code:text", "chromogranin")) == ["cga-a"]
    assert find(world, "Encounter", ("practitioner", "dr")) == ["enc1"]
    assert find(world, "Encounter", ("practitioner.name", "okafor")) == ["enc1"]
    with world.connect() as conn:
        result = search(conn, "Observation", [("_id", "grp,glu-a"), ("_include", "Observation:patient")])
        assert [r["res_id"] for r in result.included] == ["pa"]
        result = search(conn, "Patient", [("_id", "pa"), ("_revinclude", "Observation:patient")])
        assert sorted(r["res_id"] for r in result.included) == ["cga-a", "glu-a"]
        result = search(conn, "Practitioner", [("_revinclude", "Encounter:practitioner")])
        assert [r["res_id"] for r in result.included] == ["enc1"]


def test_identifier_rows_are_never_shared():
    """store.conditional finds conditional matches by `identifier` rows under that name: no type shares them."""
    with_identifier = [t for t in SEARCHABLE if supported_parameters(t).get("identifier") == "token"]
    assert len(with_identifier) > 50
    assert {indexing.stored_as(t, "identifier") for t in with_identifier} == {(("identifier",), None)}


def test_rows_an_older_version_stored_for_a_shared_parameter_change_no_answer(world):
    """Before rows were shared, patient had rows of its own (the same as subject's, restricted to Patient): a store
    written then answers as one written now."""
    from store.schema import idx_reference

    with world.begin() as conn:
        for r in conn.execute(select(idx_reference).where(idx_reference.c.param == "subject",
                                                          idx_reference.c.target_type == "Patient")).mappings().all():
            conn.execute(idx_reference.insert().values({**r, "param": "patient"}))
    assert find(world, "Observation", ("patient", "pa")) == ["cga-a", "glu-a"]
    assert find(world, "Observation", ("patient:missing", "true")) == ["no-subject"]


def test_token_text_matches_display_and_concept_text_by_word_prefix(world):
    assert find(world, "Observation", ("code:text", "chromogranin")) == ["cga-a"]
    assert find(world, "Observation", ("code:text", "serum or")) == ["cga-a", "glu-a", "glu-b"]
    assert find(world, "Observation", ("code:text", "free-text")) == ["no-subject"]
    assert find(world, "Observation", ("code:text", "lucose")) == []


def test_token_not_includes_resources_without_any_value(world):
    assert find(world, "Observation", ("code:not", "2345-7")) == ["cga-a", "no-subject"]
    assert find(world, "Condition", ("code:not", f"{SNOMED}|717919005,{SNOMED}|94381002")) == ["hypo-b"]


def test_missing_true_and_false_on_every_parameter_type(world):
    assert find(world, "Observation", ("subject:missing", "true")) == ["no-subject"]
    assert find(world, "Observation", ("subject:missing", "false")) == ["cga-a", "glu-a", "glu-b"]
    assert find(world, "Observation", ("encounter:missing", "false")) == ["glu-a"]
    assert find(world, "Condition", ("onset-date:missing", "true")) == ["hypo-b"]
    assert find(world, "Observation", ("category:missing", "true")) == ["no-subject"]
    assert find(world, "Patient", ("family:missing", "false")) == ["pa", "pb"]
    assert find(world, "Procedure", ("instantiates-uri:missing", "true")) == []
    assert find(world, "Patient", ("_id:missing", "false")) == ["pa", "pb"]


def test_uri_parameter_matches_the_whole_uri(db_engine):
    with db_engine.begin() as conn:
        store(conn, {"resourceType": "Procedure", "id": "pr", "status": "completed", "subject": {"reference": "Patient/p"},
                     "instantiatesUri": ["http://example.org/protocols/sirt"]}, "p")
    assert find(db_engine, "Procedure", ("instantiates-uri", "http://example.org/protocols/sirt")) == ["pr"]
    assert find(db_engine, "Procedure", ("instantiates-uri", "http://example.org/protocols")) == []


def test_choice_elements_are_searched_by_the_fitting_type(world):
    assert find(world, "MedicationRequest", ("code", f"{RXNORM}|7617")) == ["mr-a"]
    assert find(world, "MedicationRequest", ("medication:missing", "true")) == ["mr-a"]
    assert find(world, "Condition", ("onset-date", "2018")) == ["net-a"]


# -- dates -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [
    ("2019-03-01", ["glu-a"]),              # eq: the day contains the day
    ("2019", ["glu-a"]),
    ("eq2019-03", ["glu-a"]),
    ("ne2019-03-01", ["cga-a", "glu-b"]),
    ("gt2019-03-01", ["cga-a", "glu-b"]),
    ("lt2020-06-15T08:30:00Z", ["glu-a"]),
    ("ge2020-06-15T08:30:00Z", ["cga-a", "glu-b"]),
    ("le2019-03-01", ["glu-a"]),
    ("sa2019-03-01", ["cga-a", "glu-b"]),
    ("eb2021-01-10", ["cga-a", "glu-a"]),
    ("2021-01-10T17:00:00Z", ["glu-b"]),    # 12:00 at -05:00 is 17:00 UTC
    ("ap2020-06-15", ["cga-a", "glu-b"]),  # ap: within 10% of the distance from now (HAPI's rule)
])
def test_date_prefixes_on_observation_dates(world, value, expected):
    assert find(world, "Observation", ("date", value)) == expected


def test_date_prefixes_on_ranges_follow_r4_semantics(world):
    # met-a: onsetPeriod from 2019-02-01 with no end (open); net-a: the month 2018-11
    assert find(world, "Condition", ("onset-date", "ge2019-01-01")) == ["met-a"]
    assert find(world, "Condition", ("onset-date", "gt2018-11-15")) == ["met-a", "net-a"]
    assert find(world, "Condition", ("onset-date", "lt2018-11-15")) == ["net-a"]
    assert find(world, "Condition", ("onset-date", "eq2018")) == ["net-a"]
    assert find(world, "Condition", ("onset-date", "sa2018-12")) == ["met-a"]
    assert find(world, "Condition", ("onset-date", "eb2019")) == ["net-a"]
    assert find(world, "Encounter", ("date", "2019-03-01")) == ["enc1"]
    assert find(world, "Patient", ("birthdate", "1975-06")) == []
    assert find(world, "Patient", ("birthdate", "le1970")) == ["pa"]


def test_last_updated_and_id_read_the_resources_row(db_engine):
    with db_engine.begin() as conn:
        store(conn, patient("old", "A", "A", "1", "1950"), "old", last_updated=1546300800000)   # 2019-01-01
        store(conn, patient("new", "B", "B", "2", "1950"), "new", last_updated=1609459200000)   # 2021-01-01
    assert find(db_engine, "Patient", ("_lastUpdated", "gt2020")) == ["new"]
    assert find(db_engine, "Patient", ("_lastUpdated", "2019-01-01")) == ["old"]
    assert find(db_engine, "Patient", ("_id", "old,nope")) == ["old"]
    assert find(db_engine, "Patient", ("_id:not", "old")) == ["new"]


def test_deleted_resources_never_match(world):
    with world.begin() as conn:
        remove(conn, "Observation", "glu-a")
    assert find(world, "Observation", ("code", "2345-7")) == ["glu-b"]
    assert find(world, "Observation", ("code:not", "9811-1")) == ["glu-b", "no-subject"]


def test_patient_compartment_restricts_to_one_patient(world):
    assert find(world, "Observation", ("code", "2345-7"), patient="pb") == ["glu-b"]
    assert find(world, "Condition", patient="pa") == ["met-a", "net-a"]


# -- chains, includes ------------------------------------------------------------------------------------------
def test_one_level_chains_on_identifier_and_name(world):
    assert find(world, "Observation", ("subject.identifier", f"{MRN}|m-2")) == ["glu-b"]
    assert find(world, "Observation", ("patient.identifier", "m-1"), ("code", "9811-1")) == ["cga-a"]
    assert find(world, "Condition", ("subject:Patient.name", "müll")) == ["met-a", "net-a"]
    assert find(world, "Encounter", ("participant.identifier", f"{NPI}|9999949399")) == ["enc1"]
    assert find(world, "Observation", ("subject.family:exact", "Smith")) == ["glu-b"]


def test_chain_deeper_than_one_level_is_refused(world):
    assert error_paths(world, "Observation", ("encounter.subject.name", "x")) == ["Observation?encounter.subject.name"]


def test_include_and_revinclude_bring_related_resources_once(world):
    with world.connect() as conn:
        result = search(conn, "Observation", [("patient", "pa"), ("_include", "Observation:subject"),
                                              ("_include", "Observation:patient:Patient")])
        assert sorted(ids(result)) == ["cga-a", "glu-a"]
        assert [row["res_id"] for row in result.included] == ["pa"]
        result = search(conn, "Patient", [("_id", "pa"), ("_revinclude", "Condition:subject"),
                                          ("_revinclude", "Observation:patient")])
        assert sorted(r["res_id"] for r in result.included) == ["cga-a", "glu-a", "met-a", "net-a"]
        result = search(conn, "Encounter", [("_include", "Encounter:*")])
        assert sorted(r["res_id"] for r in result.included) == ["dr", "pa"]


def test_include_of_an_unknown_parameter_is_a_400(world):
    assert error_paths(world, "Observation", ("_include", "Observation:code")) == ["Observation?_include"]
    assert error_paths(world, "Observation", ("_include", "Patient:link")) == ["Observation?_include"]


# -- sort, paging ----------------------------------------------------------------------------------------------
def test_sort_by_date_both_directions_with_missing_dates_last(world):
    with world.connect() as conn:
        assert ids(search(conn, "Observation", [("_sort", "date")])) == ["glu-a", "cga-a", "glu-b", "no-subject"]
        assert ids(search(conn, "Observation", [("_sort", "-date")])) == ["glu-b", "cga-a", "glu-a", "no-subject"]
        assert ids(search(conn, "Patient", [("_sort", "-_id")])) == ["pb", "pa"]


def test_sorted_pages_follow_the_keyset_without_gaps(world):
    with world.connect() as conn:
        seen, cursor = [], None
        while True:
            page = search(conn, "Observation", [("_sort", "-date,_id"), ("_count", "1")], cursor=cursor)
            seen += ids(page)
            cursor = page.next_cursor
            if cursor is None:
                break
    assert seen == ["glu-b", "cga-a", "glu-a", "no-subject"]


def test_pages_neither_skip_nor_repeat_rows_under_concurrent_writes(db_engine):
    with db_engine.begin() as conn:
        for i in range(60):
            store(conn, observation(f"o{i:03}", "pa", "2345-7", "Glucose", "2019-03-01"), "pa")
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            with db_engine.begin() as conn:   # new matches, updates of matches already paged and not yet paged
                store(conn, observation(f"new{n}", "pa", "2345-7", "Glucose", "2019-03-01"), "pa")
                store(conn, observation(f"o{(n * 7) % 60:03}", "pa", "2345-7", "Glucose", "2019-03-02"), "pa")
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen, cursor = [], None
        while True:
            with db_engine.connect() as conn:
                page = search(conn, "Observation", [("code", "2345-7"), ("_count", "7")], cursor=cursor)
            seen += ids(page)
            cursor = page.next_cursor
            if cursor is None:
                break
    finally:
        stop.set()
        thread.join()
    assert len(seen) == len(set(seen))
    assert {f"o{i:03}" for i in range(60)} <= set(seen)


def test_count_summary_count_and_total(world):
    with world.connect() as conn:
        page = search(conn, "Observation", [("_count", "2"), ("_total", "accurate")])
        assert len(page.rows) == 2 and page.total == 4 and page.next_cursor
        assert search(conn, "Observation", [("_count", "2")]).total is None
        counted = search(conn, "Observation", [("code", "2345-7"), ("_summary", "count")])
        assert counted.summary_count and counted.total == 2 and counted.rows == []
        shaped = search(conn, "Patient", [("_elements", "name,birthDate"), ("_summary", "data")])
        assert shaped.elements == ["name", "birthDate"] and shaped.summary == "data"


def test_a_cursor_from_another_search_or_tampered_is_a_400(world):
    with world.connect() as conn:
        cursor = search(conn, "Observation", [("_count", "1")]).next_cursor
        assert cursor
        for bad, params in ((cursor, [("code", "2345-7"), ("_count", "1")]), ("not-a-cursor", [("_count", "1")]),
                            (cursor[:-3], [("_count", "1")])):
            with pytest.raises(InputError) as caught:
                search(conn, "Observation", params, cursor=bad)
            assert caught.value.issues[0].path == "Observation?_cursor"
        with pytest.raises(InputError):   # a cursor of the whole type is no cursor of one compartment
            search(conn, "Observation", [("_count", "1")], cursor=cursor, patient="pa")


# -- errors, lenient, caps -------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, path", [
    ([("code:foo", "x")], "Observation?code:foo"),
    ([("nonsense", "x")], "Observation?nonsense"),
    ([("code:exact", "x")], "Observation?code:exact"),
    ([("date", "2019-02-30")], "Observation?date"),
    ([("date", "xx2019")], "Observation?date"),
    ([("date", "last week")], "Observation?date"),
    ([("subject:missing", "maybe")], "Observation?subject:missing"),
    ([("code", "a|b|c")], "Observation?code"),
    ([("_sort", "code")], "Observation?_sort"),
    ([("_count", "5000")], "Observation?_count"),
    ([("_summary", "everything")], "Observation?_summary"),
    ([("subject:Medication", "x")], "Observation?subject:Medication"),
    ([("_offset", "10")], "Observation?_offset"),
])
def test_bad_parameters_are_400_with_the_parameter_path(world, params, path):
    assert error_paths(world, "Observation", *params) == [path]


def test_lenient_handling_skips_unknown_parameters_and_reports_them(world):
    with world.connect() as conn:
        result = search(conn, "Observation", [("code", "9811-1"), ("nonsense", "1"), ("code:foo", "x")], lenient=True)
    assert ids(result) == ["cga-a"]
    assert [(w.path, w.severity) for w in result.warnings] == [("Observation?nonsense", "warning"),
                                                               ("Observation?code:foo", "warning")]
    assert error_paths(world, "Observation", ("date", "garbage"), lenient=True) == ["Observation?date"]


def test_more_than_100_values_or_50_parameters_is_a_400(world):
    assert error_paths(world, "Observation", ("code", ",".join(str(i) for i in range(101)))) == ["Observation?code"]
    assert error_paths(world, "Observation", *[("code", str(i)) for i in range(51)]) == ["Observation?"]
    assert find(world, "Observation", ("code", ",".join(["2345-7", *map(str, range(99))]))) == ["glu-a", "glu-b"]


def test_match_rows_serves_conditional_criteria_and_refuses_paging(world):
    with world.connect() as conn:
        assert [r["res_id"] for r in match_rows(conn, "Patient", [("identifier", f"{MRN}|m-1")], 2)] == ["pa"]
        assert len(match_rows(conn, "Observation", [("code", "2345-7")], 1)) == 1
        with pytest.raises(InputError):
            match_rows(conn, "Patient", [("identifier", "m-1"), ("_count", "1")], 2)


def test_supported_parameters_come_from_the_r4_data_file():
    observation_params = supported_parameters("Observation")
    assert observation_params["code"] == "token" and observation_params["date"] == "date"
    assert supported_parameters("Condition")["onset-date"] == "date"
    assert supported_parameters("MedicationRequest")["authoredon"] == "date"
    assert supported_parameters("MedicationAdministration")["effective-time"] == "date"
    assert supported_parameters("Location")["identifier"] == "token"
    assert {"_id", "_lastUpdated"} <= set(supported_parameters("Organization"))
    assert SEARCH_MODIFIERS["token"] == {"missing", "not", "text"}


# -- indexed queries -------------------------------------------------------------------------------------------
SELECTIVE = [("Observation", [("patient", "p7"), ("code", f"{LOINC}|2345-7")]),
             ("Procedure", [("code", f"{SNOMED}|287847009"), ("date", "ge2019-01-01")])]


@pytest.mark.parametrize("rtype, params", SELECTIVE)
def test_selective_searches_use_indexes_not_a_scan_of_resources(db_engine, rtype, params):
    with db_engine.begin() as conn:
        for i in range(300):
            store(conn, observation(f"o{i}", f"p{i % 30}", "2345-7" if i % 2 else "9811-1", "x", "2019"), f"p{i % 30}")
            store(conn, {"resourceType": "Procedure", "id": f"pr{i}", "status": "completed",
                         "subject": {"reference": f"Patient/p{i % 30}"}, "performedDateTime": "2019-05-01",
                         "code": {"coding": [{"system": SNOMED, "code": "287847009" if i % 50 == 0 else "33149006"}]}})
        statement = page_statement(rtype, params)
        sql = statement.compile(conn, compile_kwargs={"literal_binds": True})
        if conn.dialect.name == "sqlite":
            plan = "\n".join(row[-1] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert "SCAN r" not in plan.replace("SCAN r USING", "")
            assert "USING INTEGER PRIMARY KEY" in plan
        else:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {sql}")))
            assert "Seq Scan" not in plan, plan
        assert len(search(conn, rtype, params).rows) >= 1


def test_search_ids_are_uuid_safe(db_engine):
    rid = str(uuid.uuid4())
    with db_engine.begin() as conn:
        store(conn, observation(rid, "pz", "2345-7", "Glucose", "2019"), "pz")
    assert find(db_engine, "Observation", ("_id", rid)) == [rid]


def test_string_prefix_search_reads_a_range_of_the_string_index(db_engine):
    with db_engine.begin() as conn:
        for i in range(200):
            store(conn, patient(f"p{i}", f"Fam{i:04}", "Given", str(i), "1950"), f"p{i}")
        assert sorted(ids(search(conn, "Patient", [("family", "fam001")]))) == [f"p{i}" for i in range(10, 20)]
        if conn.dialect.name == "sqlite":
            sql = page_statement("Patient", [("family", "fam001")]).compile(conn, compile_kwargs={"literal_binds": True})
            plan = "\n".join(row[-1] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert "value_norm>? AND value_norm<?" in plan, plan


def test_string_prefix_with_glob_and_like_wildcards_matches_literally(db_engine):
    with db_engine.begin() as conn:
        store(conn, {"resourceType": "Patient", "id": "w1", "name": [{"family": "O'Brien*[x]_%"}]}, "w1")
        store(conn, {"resourceType": "Patient", "id": "w2", "name": [{"family": "O'Brienxyz"}]}, "w2")
    assert find(db_engine, "Patient", ("family", "o'brien*[")) == ["w1"]
    assert find(db_engine, "Patient", ("family", "o'brien*[x]_%")) == ["w1"]
    assert find(db_engine, "Patient", ("family", "o'brien")) == ["w1", "w2"]
