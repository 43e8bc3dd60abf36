"""FHIR R4 REST on the store of record (http.html): create, read, vread, update, delete, conditional create,
update and delete, search by GET and POST, history at instance, type and system level."""
from __future__ import annotations

import csv
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from mappings.errors import InputError, Issue
from mappings.fhir_vocabulary import instant
from service import fhir_http
from service.audit import WriteEvent
from service.outcome import error, fhir_response, operation_outcome
from service.paging import base_url
from service.request_body import json_body
from store import reads
from store.bundle_plan import plan_bundle
from store.writes import EntryOutcome, TransactionFailed, apply_entries

bp = Blueprint("resources", __name__)
HISTORY_DEFAULT_COUNT, HISTORY_MAX_COUNT = 50, 1000
RESOURCE_TYPES_FILE = Path(__file__).resolve().parent.parent / "mappings" / "r4_resource_types.csv"


def _engine():
    return current_app.extensions["store"]


@lru_cache(maxsize=1)
def served_types() -> frozenset[str]:
    """The R4 resource types served: those of mappings/r4_resource_types.csv marked served (the R4 types that
    fhir.resources can validate). Data types such as Coding have models too, but are never resources."""
    with RESOURCE_TYPES_FILE.open(encoding="utf-8", newline="") as handle:
        return frozenset(row["type"] for row in csv.DictReader(handle) if row["served"] == "yes")


def known_type(rtype: str) -> bool:
    return rtype in served_types()


def _require_type(rtype: str) -> None:
    if known_type(rtype):
        return
    allowed = _other_methods(request.path)
    if allowed:  # one of the gateway's own routes (/cases, /sync, ...) asked with a method it does not take
        raise MethodNotAllowed(valid_methods=allowed)
    raise InputError([Issue("$", f"'{rtype}' is not a FHIR R4 resource type", "not-found")], 404)


def _other_methods(path: str) -> list[str]:
    """The methods that reach a route other than this blueprint's generic /<type> rules for this path."""
    adapter = current_app.url_map.bind("")
    found = []
    for method in ("GET", "POST", "PUT", "DELETE"):
        try:
            endpoint, _ = adapter.match(path, method=method)
        except HTTPException:
            continue
        if not str(endpoint).startswith("resources."):
            found.append(method)
    return found


def load_resource(rtype: str, rid: str) -> dict | None:
    """The current version of a stored resource as a dict, or None (also for one that was deleted)."""
    return reads.current(_engine(), rtype, rid)


def _audit(*patients: str | None) -> None:
    g.audit_patients = set(g.get("audit_patients", set())) | ({p for p in patients if p})


# -- read ------------------------------------------------------------------------------------------------------
@bp.get("/<rtype>/<rid>")
def read(rtype: str, rid: str) -> Response:
    _require_type(rtype)
    fhir_http.check_format()
    stored = reads.read(_engine(), rtype, rid)
    if stored is None:
        return error(404, f"{rtype}/{rid} is not known", "not-found")
    _audit(stored.patient)
    if stored.deleted:
        return _gone(stored)
    return fhir_http.resource_response(stored)


@bp.get("/<rtype>/<rid>/_history/<vid>")
def vread(rtype: str, rid: str, vid: str) -> Response:
    _require_type(rtype)
    fhir_http.check_format()
    # versionIds here are counters: more than nine digits names no version (and would overflow the column)
    stored = reads.vread(_engine(), rtype, rid, int(vid)) if vid.isdigit() and len(vid) <= 9 else None
    if stored is None:
        return error(404, f"{rtype}/{rid} has no version {vid!r}", "not-found")
    _audit(stored.patient)
    if stored.deleted:
        return _gone(stored)
    return fhir_http.resource_response(stored)


def _gone(stored: reads.Stored) -> Response:
    response = error(410, f"{stored.rtype}/{stored.rid} was deleted (version {stored.version})", "deleted")
    response.headers["ETag"] = fhir_http.version_etag(stored.version)
    return response


# -- writes ----------------------------------------------------------------------------------------------------
def _single(entry: dict, rtype: str, status_of: Callable[[EntryOutcome], int]) -> EntryOutcome:
    """One interaction as a one-entry transaction: the same checks, ids, versions and indexes as a Bundle.
    status_of(outcome): the status the route answers with, for the AuditEvent written in the same transaction."""
    _, (planned,) = plan_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, 1)
    criteria = "If-None-Exist" if "ifNoneExist" in entry["request"] else "url"
    if planned.issues:
        forbidden = all(i.code == "forbidden" for i in planned.issues)  # AuditEvent: written by this server only
        raise InputError([_rest_path(i, rtype, criteria) for i in planned.issues], 403 if forbidden else 400)
    event = WriteEvent(lambda outcomes: status_of(outcomes[0]))
    try:
        (outcome,) = apply_entries(_engine(), [planned], policy=current_app.config["REFERENCE_POLICY"], audit=event)
    except (TransactionFailed, InputError) as exc:
        raise InputError([_rest_path(i, rtype, criteria) for i in exc.issues], exc.status) from None
    event.committed()
    _audit(*outcome.patients, outcome.patient)
    hook = current_app.extensions.get("after_write")
    if hook:
        hook([outcome])
    return outcome


def _rest_path(issue: Issue, rtype: str, criteria: str) -> Issue:
    """Bundle.entry[0].resource.x -> Type.x; the request parts -> the HTTP element they came from (`criteria`:
    where a conditional interaction's search came from, If-None-Exist or the url)."""
    path = issue.path.replace("Bundle.entry[0].resource", rtype).replace("Bundle.entry[0].request.ifNoneExist", "If-None-Exist")
    path = path.replace("Bundle.entry[0].request.ifMatch", "If-Match").replace("Bundle.entry[0].request.url", "url")
    path = path.replace("Bundle.entry[0].request", criteria)
    return Issue(path.replace("Bundle.entry[0]", rtype), issue.message, issue.code, issue.severity)


def _body_resource(rtype: str) -> dict:
    body = json_body()
    if not isinstance(body, dict) or body.get("resourceType") != rtype:
        found = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
        raise InputError([Issue(f"{rtype}.resourceType", f"the body must be a {rtype}, got {found!r}", "invalid")])
    return body


def _request(method: str, url: str) -> dict:
    req = {"method": method, "url": url}
    if request.headers.get("If-Match"):
        req["ifMatch"] = request.headers["If-Match"]
    if request.headers.get("If-None-Exist"):
        req["ifNoneExist"] = request.headers["If-None-Exist"]
    return req


def _write_status(outcome: EntryOutcome) -> int:
    """The status _write_answer gives an outcome."""
    if outcome.resource is None or outcome.location is None:
        return 412
    return 201 if outcome.created else 200


def _write_answer(outcome: EntryOutcome) -> Response:
    if outcome.resource is None or outcome.location is None:  # _write_status: 412
        return error(412, "no resource was written", "processing")
    stored = reads.Stored(outcome.resource["resourceType"], outcome.resource["id"], int(outcome.resource["meta"]["versionId"]),
                          reads.instant_ms(outcome.resource["meta"]["lastUpdated"]), False,
                          json.dumps(outcome.resource, ensure_ascii=False, separators=(",", ":")), outcome.patient)
    return fhir_http.write_response(stored, _write_status(outcome), outcome.issues)


@bp.post("/<rtype>")
def create(rtype: str) -> Response:
    _require_type(rtype)
    fhir_http.check_format()
    resource = _body_resource(rtype)
    resource.pop("id", None)  # the server assigns the id of a create (http.html#create)
    return _write_answer(_single({"resource": resource, "request": _create_request(rtype)}, rtype, _write_status))


def _create_request(rtype: str) -> dict:
    """POST Type; search criteria in its query are read as If-None-Exist. R4 names only the header, but fhirpy's
    conditional create (`resource.create(identifier=...)`, `get_or_create`) sends them in the query, and ignoring
    them there would make a duplicate at every call."""
    req = _request("POST", rtype)
    criteria = [(k, v) for k, v in parse_qsl(_query(), keep_blank_values=True) if k != "_format"]
    if criteria:
        if "ifNoneExist" in req:
            raise InputError([Issue("If-None-Exist", "give the criteria of a conditional create once: in If-None-Exist or "
                                   "in the query, not both", "invalid")])
        req["ifNoneExist"] = urlencode(criteria)
    return req


@bp.put("/<rtype>/<rid>")
def update(rtype: str, rid: str) -> Response:
    _require_type(rtype)
    fhir_http.check_format()
    resource = _body_resource(rtype)
    if resource.get("id") != rid:
        return error(400, f"the resource id {resource.get('id')!r} must equal the id in the URL {rid!r} (http.html#update)",
                     "invalid", f"{rtype}.id")
    return _write_answer(_single({"resource": resource, "request": _request("PUT", f"{rtype}/{rid}")}, rtype, _write_status))


@bp.put("/<rtype>")
def conditional_update(rtype: str) -> Response:
    _require_type(rtype)
    fhir_http.check_format()
    resource = _body_resource(rtype)
    return _write_answer(_single({"resource": resource, "request": _request("PUT", f"{rtype}?{_query()}")}, rtype, _write_status))


@bp.delete("/<rtype>/<rid>")
def delete(rtype: str, rid: str) -> Response:
    _require_type(rtype)
    outcome = _single({"request": _request("DELETE", f"{rtype}/{rid}")}, rtype, _delete_status)
    return _delete_answer(outcome)


@bp.delete("/<rtype>")
def conditional_delete(rtype: str) -> Response:
    _require_type(rtype)
    outcome = _single({"request": _request("DELETE", f"{rtype}?{_query()}")}, rtype, _delete_status)
    return _delete_answer(outcome)


def _delete_status(_outcome: EntryOutcome) -> int:
    """The status _delete_answer gives."""
    return 200 if fhir_http.prefer().get("return") == "OperationOutcome" else 204


def _delete_answer(outcome: EntryOutcome) -> Response:
    headers = {"ETag": outcome.etag} if outcome.etag else {}
    if _delete_status(outcome) == 200:
        return fhir_response(operation_outcome([Issue("$", "deleted" if outcome.etag else "nothing to delete", "informational",
                                                      "information")]), 200, headers)
    return fhir_http.empty_response(204, headers)


def _query() -> str:
    return request.query_string.decode("utf-8", "replace")


# -- search ----------------------------------------------------------------------------------------------------
@bp.get("/<rtype>")
def search_type(rtype: str) -> Response:
    _require_type(rtype)
    fhir_http.check_format()
    return _search(rtype, parse_qsl(_query(), keep_blank_values=True), f"/{rtype}")


@bp.post("/<rtype>/_search")
def search_post(rtype: str) -> Response:
    """POST _search: the form body's parameters join those of the URL (search.html#search)."""
    _require_type(rtype)
    fhir_http.check_format()
    if request.mimetype != "application/x-www-form-urlencoded":
        return error(415, "POST _search takes application/x-www-form-urlencoded parameters", "not-supported")
    body = request.get_data(as_text=True)
    return _search(rtype, parse_qsl(_query(), keep_blank_values=True) + parse_qsl(body, keep_blank_values=True), f"/{rtype}")


def _search(rtype: str, params: list[tuple[str, str]], path: str, patient: str | None = None) -> Response:
    from service.searchset import search_bundle

    bundle, patients = search_bundle(_engine(), rtype, params, path, fhir_http.lenient(), patient)
    _audit(*patients)
    return fhir_response(bundle)


# -- history ---------------------------------------------------------------------------------------------------
@bp.get("/<rtype>/<rid>/_history")
def instance_history(rtype: str, rid: str) -> Response:
    _require_type(rtype)
    return _history(rtype, rid, f"/{rtype}/{rid}/_history")


@bp.get("/<rtype>/_history")
def type_history(rtype: str) -> Response:
    _require_type(rtype)
    return _history(rtype, None, f"/{rtype}/_history")


@bp.get("/_history")
def system_history() -> Response:
    return _history(None, None, "/_history")


def _history(rtype: str | None, rid: str | None, path: str) -> Response:
    """A history Bundle, newest first (http.html#history), paged by a keyset on the write sequence."""
    fhir_http.check_format()
    params = request.args
    unknown = sorted(set(params) - {"_since", "_count", "_at", "_page_before", "_format"})
    if unknown or params.get("_at"):
        name = unknown[0] if unknown else "_at"
        raise InputError([Issue(f"?{name}", f"'{name}' is not supported on history (use _since, _count)", "not-supported")])
    count = _int_param("_count", HISTORY_DEFAULT_COUNT, HISTORY_MAX_COUNT) or HISTORY_DEFAULT_COUNT
    since = _instant_param("_since")
    before = _int_param("_page_before", None, None)
    if rid and reads.read(_engine(), rtype or "", rid) is None:
        return error(404, f"{rtype}/{rid} is not known", "not-found")
    page, more = reads.history(_engine(), rtype, rid, since, count, before)
    _audit(*(s.patient for s in page))
    base = base_url()
    entries = []
    for s in page:
        entry: dict = {"fullUrl": f"{base}/{s.rtype}/{s.rid}",
                       "request": {"method": s.method or "PUT", "url": f"{s.rtype}/{s.rid}" if s.method != "POST" else s.rtype},
                       "response": {"status": "201" if s.method == "POST" or (s.version == 1 and not s.deleted) else
                                    ("204" if s.deleted else "200"),
                                    "etag": fhir_http.version_etag(s.version), "lastModified": instant(s.last_updated)}}
        if s.body:
            entry["resource"] = json.loads(s.body)
        entries.append(entry)
    keep = "&".join(f"{k}={v}" for k, v in (("_since", params.get("_since")), ("_count", params.get("_count"))) if v)
    links = [{"relation": "self", "url": f"{base}{path}{'?' + request.query_string.decode() if request.query_string else ''}"}]
    if more:
        links.append({"relation": "next", "url": f"{base}{path}?{keep + '&' if keep else ''}_page_before={more}"})
    return fhir_response({"resourceType": "Bundle", "type": "history", "link": links, "entry": entries})


def _int_param(name: str, default: int | None, upper: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    # 18 digits fit the BIGINT the value is compared with; a longer one would fail in the database (a 500)
    if not raw.isdigit() or int(raw) == 0 or len(raw) > 18:
        raise InputError([Issue(f"?{name}", f"{name} must be a positive integer, got {raw!r}", "value")])
    return min(int(raw), upper) if upper else int(raw)


def _instant_param(name: str) -> int | None:
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return reads.instant_ms(raw)
    except ValueError:
        raise InputError([Issue(f"?{name}", f"{raw!r} is not a FHIR instant", "value")]) from None

