"""Reads a JSON request body, turning every way it can be wrong into a typed input error."""
from __future__ import annotations

import json

from flask import request

from mappings.errors import CaseError, Issue

JSON_TYPES = ("application/json", "application/fhir+json")


def json_body() -> object:
    """The parsed body; CaseError (400/415 by its issue code) for wrong media type, bad encoding or bad JSON."""
    mimetype = request.mimetype or ""
    if mimetype and mimetype not in JSON_TYPES:
        raise CaseError([Issue("$", f"unsupported media type '{mimetype}': send application/json or application/fhir+json", "not-supported")], 415)
    raw = request.get_data(cache=False)
    if not raw:
        raise CaseError([Issue("$", "the request body is empty", "required")])
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CaseError([Issue("$", f"the body is not UTF-8 (byte {exc.start})", "structure")]) from None
    except json.JSONDecodeError as exc:
        raise CaseError([Issue("$", f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "structure")]) from None
