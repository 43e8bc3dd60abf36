"""R4 http.html details shared by the REST routes: formats (406), Prefer, ETag and Last-Modified headers,
conditional reads (304), and the one way a stored version becomes a response."""
from __future__ import annotations

import datetime as dt
import email.utils
from functools import lru_cache

from flask import Response, request
from flask.globals import _cv_request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from mappings.errors import InputError, Issue
from service.outcome import FHIR_JSON, fhir_response, operation_outcome
from store.reads import Stored

JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")
XML_FORMATS = ("xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir")
RETURN_PREFERENCES = ("minimal", "representation", "OperationOutcome")


@lru_cache(maxsize=256)
def _admits_json(accept: str) -> bool:
    # Parsing an Accept header is the dearest part of this check, and clients send the same few over and over;
    # the answer depends on the header's text alone (as request.accept_mimetypes parses it).
    return bool(parse_accept_header(accept, MIMEAccept).best_match([FHIR_JSON, "application/json"]))


def check_format() -> None:
    """Only JSON is served: `_format=xml` or an Accept that admits no JSON is 406 (http.html#mime-type)."""
    req = _cv_request.get().request  # one context lookup for the whole check
    fmt = req.args.get("_format") if req.query_string else None  # no query string: no _format (and no parsing)
    if fmt and fmt not in JSON_FORMATS:
        raise InputError([Issue("?_format", f"_format {fmt!r} is not served; this server speaks application/fhir+json", "not-supported")], 406)
    accept = req.environ.get("HTTP_ACCEPT")  # request.headers.get("Accept")
    if accept and not fmt and not _admits_json(accept):
        raise InputError([Issue("Accept", f"cannot answer in {accept!r}; this server speaks application/fhir+json", "not-supported")], 406)


def http_date(ms: int) -> str:
    return email.utils.format_datetime(dt.datetime.fromtimestamp(ms // 1000, dt.UTC), usegmt=True)


def version_etag(version: int) -> str:
    return f'W/"{version}"'


def prefer() -> dict[str, str]:
    """The Prefer header as a dict (return=..., handling=..., respond-async)."""
    found: dict[str, str] = {}
    for part in request.headers.get("Prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            found[name.strip().lower()] = value.strip().strip('"')
    return found


def lenient() -> bool:
    return prefer().get("handling") == "lenient"


def not_modified(stored: Stored) -> bool:
    """If-None-Match (an ETag match) or If-Modified-Since (no change since): 304 (http.html#cread)."""
    tags = [t.strip() for t in request.headers.get("If-None-Match", "").split(",") if t.strip()]
    if tags:
        return "*" in tags or version_etag(stored.version) in tags or f'"{stored.version}"' in tags
    since = request.headers.get("If-Modified-Since")
    if since:
        try:
            parsed = email.utils.parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        return stored.last_updated // 1000 <= int(parsed.timestamp())
    return False


def empty_response(status: int, headers: dict[str, str]) -> Response:
    """A response without a body (204, 304, return=minimal) carries no Content-Type: there is nothing to type."""
    response = Response(status=status, headers=headers)
    del response.headers["Content-Type"]
    return response


def version_headers(stored: Stored, location: bool = False) -> dict[str, str]:
    headers = {"ETag": version_etag(stored.version), "Last-Modified": http_date(stored.last_updated)}
    if location:
        from service.paging import base_url

        headers["Location"] = f"{base_url()}/{stored.rtype}/{stored.rid}/_history/{stored.version}"
    return headers


def resource_response(stored: Stored, status: int = 200, location: bool = False) -> Response:
    headers = version_headers(stored, location)
    if not_modified(stored) and status == 200 and request.method == "GET":
        return empty_response(304, headers)
    return Response(stored.body, status=status, mimetype=FHIR_JSON, headers=headers)


def write_response(stored: Stored, status: int, warnings: list[Issue]) -> Response:
    """The answer to a create or update, as Prefer: return= asks (representation by default)."""
    choice = prefer().get("return", "representation")
    headers = version_headers(stored, location=True)
    if choice == "minimal":
        return empty_response(status, headers)
    if choice == "OperationOutcome":
        issues = warnings or [Issue(f"{stored.rtype}/{stored.rid}", f"{'created' if status == 201 else 'updated'} version {stored.version}",
                                    "informational", "information")]
        return fhir_response(operation_outcome(issues), status, headers)
    return Response(stored.body, status=status, mimetype=FHIR_JSON, headers=headers)
