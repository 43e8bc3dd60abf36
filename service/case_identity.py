"""A stored case keeps its patient: a re-submission of a caseId by its source that names another person is refused.

Identifiers are scoped by source (mappings/references.py: fact_system), so another source can never reach a case.
Within one source a caseId names one case, and a re-submission updates it in place (idempotent when unchanged).
If the source reuses a caseId for a different patient, that update would silently replace the first patient's
record with the second's; the gateway answers 409 instead. "Different" is what cannot change for one person and
the case format can state: the sex, and the birth and death dates when both documents give them. A correction of
those is an explicit act: delete the stored case (or submit it under a new caseId).
"""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

from flask import current_app

from mappings.errors import InputError, Issue
from store import db
from store.search import match_rows

# Patient elements that one person never changes; each is compared only when both versions carry it.
IDENTITY_ELEMENTS = (("gender", "patient.sex"), ("birthDate", "patient.birthDate"),
                     ("deceasedDateTime", "patient.death.time"))


def _patient_entry(bundle: dict) -> dict | None:
    return next((e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"), None)


def _differences(stored: dict, submitted: dict) -> list[tuple[str, str]]:
    """(element, case path) of each identity element both carry with different values."""
    return [(element, path) for element, path in IDENTITY_ELEMENTS
            if element in stored and element in submitted and stored[element] != submitted[element]]


def guard_patient(bundle: dict) -> None:
    """Raise 409 when the case's stored Patient is another person; otherwise pin the Patient entry to the
    version just compared (ifMatch), so that a concurrent write in between gives 412, never a silent replace."""
    entry = _patient_entry(bundle)
    if entry is None:
        return
    case_id = entry["resource"]["identifier"][0]["value"].rsplit("/", 1)[0]  # '<caseId>/patient'
    criteria = parse_qsl(urlsplit(entry["request"]["url"]).query)
    with db.reading(current_app.extensions["store"]) as conn:
        matches = match_rows(conn, "Patient", criteria, 2)
    if len(matches) != 1:
        return  # none: a new case; several: the store's conditional update answers 412 itself
    stored = json.loads(matches[0]["body"])
    differences = _differences(stored, entry["resource"])
    if differences:
        pid = matches[0]["res_id"]
        raise InputError([Issue(path, f"caseId {case_id!r} is already stored for Patient/{pid}, another patient "
                               f"({element} {stored[element]!r}, this case {entry['resource'][element]!r}). A caseId names "
                               "one case of one patient: submit this case under a new caseId, or delete the stored case first",
                               "conflict") for element, path in differences], 409)
    entry["request"]["ifMatch"] = f'W/"{matches[0]["version"]}"'
