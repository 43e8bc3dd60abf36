"""Provenance: which case every resource came from, and through Reference.identifier which fact."""
from __future__ import annotations

import datetime as dt

from mappings.context import MapContext
from mappings.references import case_identifier

PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def to_fhir_provenance(ctx: MapContext, entries: list[dict], recorded: dt.datetime | None = None) -> dict:
    recorded = recorded or dt.datetime.now(dt.UTC)
    source = ctx.case.get("source", {})
    display = " — ".join(v for v in (source.get("citation"), source.get("section")) if v) or f"case {ctx.case_id}"
    return {
        "resourceType": "Provenance",
        "target": [{"reference": e["fullUrl"], "identifier": e["resource"]["identifier"][0]} for e in entries],
        "recorded": recorded.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "activity": {"text": "Mapped from case data format v1"},
        "agent": [{
            "type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "assembler", "display": "Assembler"}]},
            "who": {"display": "oncology-gateway case mapper"},
        }],
        "entity": [{
            "role": "source",
            "what": {"identifier": case_identifier(ctx.case_id, ctx.source), "display": display[:500]},
        }],
    }
