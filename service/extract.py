"""Narrative extraction: prose (text/plain, or a FHIR DocumentReference/Binary carrying it) in, draft case
documents with their evidence out; and the review page where a person checks them before creating a case.

The engine is `narrative/` (pure, medspaCy on a blank spaCy pipeline); this module only reads the request,
checks each draft the way `POST /cases/$validate` does, and answers."""
from __future__ import annotations

import base64
import binascii
import json
import re

from flask import Blueprint, Response, g, render_template, request

from mappings.case_validation import check_case
from mappings.errors import InputError, Issue
from mappings.timeline import Timeline
from service.outcome import error
from service.request_body import JSON_TYPES, parse_json
from service.resources import load_resource

bp = Blueprint("extract", __name__, template_folder="templates", static_folder="static/extract",
               static_url_path="/static/extract")
TEXT_TYPES = ("text/plain", "text/markdown")
# Extraction costs ~0.1 s per 1,000 characters on one core for a seed report, but grows faster than the length
# (measured: 17,580 characters 0.5 s, 70,320 12 s, 200,000 82 s): a bound keeps one request from holding a
# worker for minutes (a long discharge summary is ~20,000 characters).
MAX_TEXT_CHARS = 50_000
# spaCy's tokenizer strips suffixes from a whitespace-free run one character at a time, quadratic in its length
# (8,000 '(' took 56 s): no word of a clinical note is this long, so a longer run is refused before spaCy sees it.
MAX_WORD_CHARS = 500
_WORD = re.compile(r"\S+")  # linear: each character is looked at once


@bp.post("/cases/$extract")
def extract_posted() -> Response:
    """A text, or a DocumentReference/Binary resource carrying one, in; {"drafts": [...]} out."""
    mimetype = request.mimetype or ""
    raw = request.get_data(cache=False)
    if not raw:
        raise InputError([Issue("$", "the request body is empty", "required")])
    if mimetype in TEXT_TYPES or not mimetype:
        return _answer(_decode(raw, "$"))
    if mimetype in JSON_TYPES:
        resource = parse_json(raw)
        if not isinstance(resource, dict):
            raise InputError([Issue("$", "send a DocumentReference or Binary resource", "structure")])
        return _answer(resource_text(resource))
    raise InputError([Issue("$", f"unsupported media type '{mimetype}': send text/plain, or a DocumentReference or "
                                "Binary as application/fhir+json", "not-supported")], 415)


@bp.post("/DocumentReference/<rid>/$extract")
def extract_stored(rid: str) -> Response:
    """The note of a stored DocumentReference (e.g. the base64 notes EHR exports carry), extracted."""
    resource = load_resource("DocumentReference", rid)
    if resource is None:
        return error(404, f"DocumentReference/{rid} is not stored", "not-found")
    subject = (resource.get("subject") or {}).get("reference") or ""
    if subject.startswith("Patient/"):  # reading a patient's note is recorded in the audit log
        g.audit_patients = set(g.get("audit_patients", set())) | {subject.split("/", 1)[1]}
    return _answer(resource_text(resource))


@bp.get("/cases/$extract/review")
def review_page() -> Response:
    return Response(render_template("extract_review.html"), mimetype="text/html")


def resource_text(resource: dict) -> str:
    """The text a DocumentReference (content[].attachment) or Binary (data) carries; 422 when none is text."""
    kind = resource.get("resourceType")
    if kind == "Binary":
        attachments = [(resource, "$.data")]
    elif kind == "DocumentReference":
        attachments = [(c.get("attachment") or {}, f"$.content[{i}].attachment")
                       for i, c in enumerate(resource.get("content") or []) if isinstance(c, dict)]
    else:
        raise InputError([Issue("$.resourceType", f"cannot extract from a {kind!r}: send a DocumentReference or a "
                                                 "Binary", "not-supported")], 422)
    for attachment, path in attachments:
        content_type = (attachment.get("contentType") or "text/plain").split(";")[0].strip()
        if content_type not in TEXT_TYPES or not attachment.get("data"):
            continue
        try:
            raw = base64.b64decode(attachment["data"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise InputError([Issue(path, "the attachment data is not base64", "invalid")], 422) from None
        return _decode(raw, path)
    raise InputError([Issue("$", "no text/plain attachment with inline data to extract from", "not-found")], 422)


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError([Issue(path, f"the text is not UTF-8 (byte {exc.start})", "structure")]) from None


def _answer(text: str) -> Response:
    if not text.strip():
        raise InputError([Issue("$", "the text is empty", "required")])
    if len(text) > MAX_TEXT_CHARS:
        raise InputError([Issue("$", f"the text has {len(text)} characters; at most {MAX_TEXT_CHARS} are extracted "
                                    "in one request", "too-long")], 413)
    long_word = next((m for m in _WORD.finditer(text) if m.end() - m.start() > MAX_WORD_CHARS), None)
    if long_word:
        raise InputError([Issue("$", f"the text has a run of more than {MAX_WORD_CHARS} characters without a space at "
                                    f"offset {long_word.start()}; such text is not extracted (its cost grows with the "
                                    "square of the run)", "too-costly")], 413)
    # spaCy takes seconds to import: only when text is extracted, not when the gateway starts.
    from narrative import extract_drafts

    drafts = extract_drafts(text)
    for draft in drafts:
        draft["issues"] = _issues(draft["case"])
    body = {"textLength": len(text), "drafts": drafts}
    return Response(json.dumps(body, ensure_ascii=False), mimetype="application/json")


def _issues(case: dict) -> list[dict]:
    """What POST /cases/$validate would say of the draft (empty: it validates)."""
    try:
        check_case(case)
        Timeline(case)
    except InputError as exc:
        return [{"expression": i.path, "diagnostics": i.message, "code": i.code} for i in exc.issues]
    return []
