"""The patient timeline page: treatment lines, events, tumour markers and outcomes as one printable SVG.

Everything is rendered here on the server (no script, no external resources). Times come from the
treatment-line summary's proven bounds; tumour markers are placed on the same partial order of events.
"""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, render_template
from markupsafe import Markup

from mappings.fhir_vocabulary import EVENT_TIME_URL, TUMOR_MARKER_PROFILE
from service import timeline_svg
from service.outcome import error
from store import patient_cache, reads
from summaries.line_summary import cached_summary, variant as summary_variant
from treatment_lines.report import time_span
from treatment_lines.resources import ResourceIndex
from treatment_lines.timeline import Timeline

bp = Blueprint("timeline_page", __name__, template_folder="templates")

IGNORED_STATUSES = {"entered-in-error", "cancelled", "registered"}
OUTCOME_KEYS = ("bestRadiologicalResponse", "syndromeControl", "biomarkerResponse")
INTERPRETATIONS = {"H": "high", "HH": "critically high", "HU": "significantly high", "L": "low", "LL": "critically low",
                   "LU": "significantly low", "N": "normal", "A": "abnormal", "AA": "critically abnormal",
                   "POS": "positive", "NEG": "negative"}


@bp.get("/Patient/<pid>/timeline")
def patient_timeline(pid: str) -> Response:
    engine, client = current_app.extensions["store"], current_app.extensions["redis"]
    exists, version = reads.patient_exists(engine, pid)
    if not exists:
        return error(404, f"Patient/{pid} is not known", "not-found")
    g.audit_patients = set(g.get("audit_patients", set())) | {pid}
    # The page (summary, marker series and SVG) is cached under the patient's version, like the summary itself:
    # a view costs one cache read until the next write.
    variant = patient_cache.variant_key("timeline-page", summary_variant())
    page, _, _ = patient_cache.cached_view(client, pid, version, variant, lambda: _render(engine, client, pid),
                                           lambda: reads.patient_version(engine, pid))
    # A page of PHI: never kept by shared caches.
    return Response(page, mimetype="text/html", headers={"Cache-Control": "private, no-store"})


def _render(engine, client, pid: str) -> bytes:
    summary = json.loads(cached_summary(engine, client, pid)[0])
    markers = tumour_markers(reads.compartment(engine, pid), summary)
    chart = timeline_svg.Chart(summary, markers)
    return render_template("timeline.html", pid=pid, summary=summary, chart=Markup(chart.svg()),
                           legend=Markup(timeline_svg.legend()), frame=chart.frame, unplaced=chart.unplaced,
                           flags=summary.get("flags") or [], markers=markers,
                           time_label=timeline_svg.time_label).encode("utf-8")


def tumour_markers(resources: list[dict], summary: dict) -> list[dict]:
    """Tumour-marker values: mCODE tumor-marker-test Observations, and valued Observations a line's outcomes use."""
    index = ResourceIndex([r for r in resources if isinstance(r, dict) and r.get("resourceType")])
    used_by = _used_by_lines(index, summary)
    candidates = [(key, obs) for key, obs in index.of_type("Observation")
                  if obs.get("status") not in IGNORED_STATUSES and _is_marker(obs, key in used_by)]
    if not candidates:
        return []
    tl = Timeline(index)
    found = [_marker(key, obs, tl, index, summary, sorted(used_by.get(key, ()))) for key, obs in candidates]
    return sorted(found, key=lambda m: (tl.sort_key((m["reference"], "start")), m["name"], m["reference"]))


def _used_by_lines(index: ResourceIndex, summary: dict) -> dict[str, set[int]]:
    """Observation key -> numbers of the lines whose outcomes cite it (directly or as derivedFrom)."""
    used: dict[str, set[int]] = {}
    for line in summary.get("lines") or []:
        for name in OUTCOME_KEYS:
            for ref in (line["outcomes"].get(name) or {}).get("observations") or []:
                key = index.resolve(ref)
                if key is None:
                    continue
                derived = [index.resolve(d) for d in index.by_key[key].get("derivedFrom") or []]
                for k in [key, *derived]:
                    if k:
                        used.setdefault(k, set()).add(line["number"])
    return used


def _is_marker(obs: dict, used: bool) -> bool:
    valued = "valueQuantity" in obs or bool(obs.get("interpretation"))
    profiled = TUMOR_MARKER_PROFILE in ((obs.get("meta") or {}).get("profile") or [])
    return valued and (profiled or used)


def _marker(key: str, obs: dict, tl: Timeline, index: ResourceIndex, summary: dict, lines: list[int]) -> dict:
    interpretation = _interpretation(obs)
    return {
        "reference": key, "name": short_name(_concept_text(obs.get("code") or {})),
        "fullName": _concept_text(obs.get("code") or {}), "value": _value(obs, interpretation),
        "interpretation": interpretation, "abnormal": interpretation not in (None, "normal", "negative"),
        "time": time_span(tl, [(key, "start")]), "note": _event_time_text(obs), "lines": lines,
        "relation": _relation(key, tl, index, summary, lines),
    }


def _relation(key: str, tl: Timeline, index: ResourceIndex, summary: dict, lines: list[int]) -> dict | None:
    """For a value known only as before/after a line's therapy: which line and which side of its start."""
    for line in summary.get("lines") or []:
        if line["number"] not in lines:
            continue
        starts = [(k, "start") for k in map(index.resolve, line.get("references") or []) if k]
        if any(tl.le((key, "start"), s) for s in starts):
            return {"line": line["number"], "side": "before"}
        if any(tl.le(s, (key, "start")) for s in starts):
            return {"line": line["number"], "side": "after"}
    return None


def _concept_text(concept: dict) -> str:
    coding: dict = next(iter(concept.get("coding") or []), {})
    return concept.get("text") or coding.get("display") or coding.get("code") or "Observation"


def short_name(text: str) -> str:
    """'24 h urine 5-hydroxyindoleacetic acid (5-HIAA)' -> '5-HIAA'; otherwise the text itself."""
    found = timeline_svg.ABBREVIATION.search(text)
    return found.group(1) if found else text


def _interpretation(obs: dict) -> str | None:
    for concept in obs.get("interpretation") or []:
        for coding in concept.get("coding") or []:
            if coding.get("code") in INTERPRETATIONS:
                return INTERPRETATIONS[coding["code"]]
        if concept.get("text"):
            return concept["text"].lower()
    return None


def _value(obs: dict, interpretation: str | None) -> str:
    quantity = obs.get("valueQuantity") or {}
    if quantity.get("value") is not None:
        comparator = quantity.get("comparator", "")
        return f"{comparator}{quantity['value']:g} {quantity.get('unit') or quantity.get('code') or ''}".strip()
    concept = obs.get("valueCodeableConcept")
    return (_concept_text(concept) if concept else interpretation or "value not recorded").lower()


def _event_time_text(obs: dict) -> str | None:
    for ext in obs.get("extension") or []:
        if ext.get("url") == EVENT_TIME_URL:
            return next((e.get("valueString") for e in ext.get("extension") or [] if e.get("url") == "text"), None)
    return None
