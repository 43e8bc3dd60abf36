"""Patient views: $everything (GET and POST; cached, ETag/304) and the normalised procedure history for registries."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, Response, current_app, g, request
from flask.globals import _cv_app, _cv_request

from mappings.errors import InputError, Issue
from registry.procedure_history import procedure_history, public, to_csv
from service import fhir_http, rate_limit
from service.metrics import record_cache
from service.outcome import FHIR_JSON, error, fhir_response
from service.paging import DEFAULT_COUNT, MAX_COUNT, base_url, searchset
from store import db, patient_cache, reads, version_mirror

bp = Blueprint("patients", __name__)
EVERYTHING_PARAMS = ("_since", "_type", "_count", "_cursor")


def _engine():
    return current_app.extensions["store"]


def _redis():
    return current_app.extensions.get("redis")


def _everything_params(pairs: list[tuple[str, str]]) -> dict[str, object]:
    """The query, checked and normalised: only the parameters served, each once, in one canonical form (the
    cache key is built from this, never from the raw query string, so junk variants cannot fill the cache)."""
    issues = [Issue(f"?{k}", f"'{k}' is not supported by $everything (use _since, _type, _count)", "not-supported")
              for k, _ in pairs if k not in EVERYTHING_PARAMS and k != "_format"]
    found: dict[str, str] = {}
    for k, v in pairs:
        if k in found and k != "_type":
            issues.append(Issue(f"?{k}", f"'{k}' may be given once", "value"))
        found[k] = f"{found[k]},{v}" if k == "_type" and k in found else v
    since = None
    if "_since" in found:
        try:
            since = reads.instant_ms(found["_since"])
        except ValueError:
            issues.append(Issue("?_since", f"{found['_since']!r} is not a FHIR instant", "value"))
    types = sorted({t for t in found.get("_type", "").split(",") if t})
    from service.resources import known_type

    issues += [Issue("?_type", f"'{t}' is not a FHIR R4 resource type", "value") for t in types if not known_type(t)]
    count_raw = found.get("_count", str(DEFAULT_COUNT))
    cursor_raw = found.get("_cursor", "")
    if not count_raw.isdigit() or int(count_raw) == 0:
        issues.append(Issue("?_count", f"_count must be a positive integer, got {count_raw!r}", "value"))
    if cursor_raw and not cursor_raw.isdigit():
        issues.append(Issue("?_cursor", "_cursor is not one this server gave", "value"))
    if issues:
        raise InputError(issues)
    return {"since": since, "types": types, "count": min(int(count_raw), MAX_COUNT),
            "cursor": int(cursor_raw) if cursor_raw else None}


def _everything_body(pid: str, q: dict, version: int) -> bytes:
    base = base_url()
    with db.reading(_engine()) as conn:
        page, after, total = reads.compartment_page(conn, pid, q["since"], set(q["types"]) or None, q["cursor"], q["count"])
    keep = [(k, v) for k, v in (("_since", request.args.get("_since")), ("_type", ",".join(q["types"])),
                                ("_count", str(q["count"]))) if v]
    path = f"{base}/Patient/{pid}/$everything"
    links = [{"relation": "self", "url": f"{path}?{urlencode(keep + ([('_cursor', str(q['cursor']))] if q['cursor'] is not None else []))}"}]
    if after is not None:
        links.append({"relation": "next", "url": f"{path}?{urlencode(keep + [('_cursor', str(after))])}"})
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links,
              "entry": [{"fullUrl": f"{base}/{s.rtype}/{s.rid}", "resource": json.loads(s.body or "{}"), "search": {"mode": "match"}}
                        for s in page]}
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# The version each patient had when this process last served it: the guess under which the cached bytes are
# fetched in the same round trip as the version itself. Bounded: a wrong or missing guess costs one more GET.
_last_version: dict[str, int] = {}


# The parameters of a query string, checked and normalised, with the cache variant they select (for one base
# URL): a pure function of the query text, so each text is worked out once (a bounded few; a query that fails the
# checks is never remembered and fails again each time). Most reads send none at all.
_MAX_QUERIES = 1024
_queries: dict[tuple[str, bytes], tuple[dict[str, object], str]] = {}


def _query(base: str, query: bytes, pairs: list[tuple[str, str]] | None) -> tuple[dict[str, object], str]:
    """(the normalised parameters, their cache variant) for this base URL and query; pairs: a POST body's."""
    known = _queries.get((base, query)) if pairs is None else None
    if known is not None:
        return known
    q = _everything_params(parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True) + (pairs or []))
    found = q, patient_cache.variant_key("everything", base, json.dumps(q, sort_keys=True))
    if pairs is None:
        if len(_queries) >= _MAX_QUERIES:
            _queries.clear()
        _queries[base, query] = found
    return found


@bp.get("/Patient/<pid>/$everything")
@bp.post("/Patient/<pid>/$everything")
@rate_limit.deferred  # a cached read is one Redis round trip: the rate count goes in the cache lookup's pipeline
def everything(pid: str) -> Response:
    req, app_g, app = _cv_request.get().request, _cv_app.get().g, _cv_app.get().app  # each proxy use is a lookup
    fhir_http.check_format()
    q, variant = _query(base_url(), req.query_string, _parameters_body() if req.method == "POST" else None)
    engine, client = app.extensions["store"], app.extensions.get("redis")
    mirror = version_mirror.for_engine(engine)
    guess = _last_version.get(pid)
    checks: list = []

    def count_request(pipe) -> int:
        size, check = rate_limit.queue_hit(pipe)
        checks.append(check)
        return size

    # One round trip: the rate count, the mirrored version (store/version_mirror.py) and the bytes under the guess.
    read, body, counted = patient_cache.lookup(client, mirror, pid, guess, variant, count_request)
    if checks:
        checks[0](counted)  # a client over its limit gets 429 here, before any bundle is built or served
    else:
        rate_limit.take_pending()  # no Redis: counted (or not) the usual way
    fetch_after_check = False
    if read is not None and read.version is not None:
        version = read.version  # the mirror holds only the versions of live patients
        if guess != version:
            body, fetch_after_check = None, True  # bytes of another version; fetched once the 304 check is passed
    else:
        exists, version = reads.patient_exists(engine, pid)  # the row of record: a write of any process is seen
        if not exists:
            return error(404, f"Patient/{pid} is not known", "not-found")
        # The version read offered to the mirror and, when the guess was wrong, the right bytes: one round trip.
        fetched = patient_cache.fill_and_get(client, mirror, read, pid, version, variant if guess != version else None)
        if guess != version:
            body = fetched
    if guess != version:
        if len(_last_version) > 100_000:
            _last_version.clear()
        _last_version[pid] = version
    app_g.audit_patients = {*app_g.get("audit_patients", ()), pid}
    tag = patient_cache.etag(pid, version, variant)
    given = req.environ.get("HTTP_IF_NONE_MATCH")  # request.headers.get("If-None-Match"), without parsing it
    if given and req.if_none_match and tag in [t.strip() for t in given.split(",")]:
        return Response(status=304, headers={"ETag": tag})
    if fetch_after_check:
        body = patient_cache.get(client, pid, version, variant)
    hit = body is not None
    if body is None:
        body = patient_cache.build_and_put(client, pid, version, variant, lambda: _everything_body(pid, q, version),
                                           lambda: reads.patient_version(engine, pid))
    record_cache(hit)
    return Response(body, mimetype=FHIR_JSON, headers={"ETag": tag, "X-Cache": "hit" if hit else "miss"})


def _parameters_body() -> list[tuple[str, str]]:
    """POST $everything takes a Parameters resource (or nothing): its valueX parameters as query pairs."""
    if not request.get_data(cache=True):
        return []
    from service.request_body import json_body

    body = json_body()
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InputError([Issue("$", "POST $everything takes a Parameters resource", "invalid")])
    pairs = []
    for i, p in enumerate(body.get("parameter", [])):
        values = [v for k, v in p.items() if k.startswith("value")] if isinstance(p, dict) else []
        if not values or not isinstance(values[0], (str, int)):
            raise InputError([Issue(f"Parameters.parameter[{i}]", "each parameter needs a primitive value[x]", "invalid")])
        pairs.append((str(p.get("name")), str(values[0])))
    return pairs


@bp.get("/Patient/<pid>/procedure-history")
def patient_procedure_history(pid: str) -> Response:
    stored = reads.read(_engine(), "Patient", pid)
    if stored is None or stored.deleted:
        return error(404, f"Patient/{pid} is not known", "not-found")
    g.audit_patients = set(g.get("audit_patients", set())) | {pid}
    resources = reads.compartment(_engine(), pid)
    records = procedure_history(resources, f"Patient/{pid}")
    wanted = request.accept_mimetypes.best_match(["application/json", "text/csv", FHIR_JSON], default="application/json")
    fmt = request.args.get("_format") or wanted
    if fmt in ("text/csv", "csv"):
        # An attachment: a spreadsheet opening it is warned, and cells are neutralised in to_csv.
        return Response(to_csv(records), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="procedure-history-{pid}.csv"'})
    if fmt in (FHIR_JSON, "fhir", "json+fhir"):
        by_ref = {f"Procedure/{r['id']}": r for r in resources if r["resourceType"] == "Procedure"}
        ordered = [by_ref[r["procedure"]] for r in records]
        return fhir_response(searchset(ordered, {"_count": [str(max(1, len(ordered)))]}, f"/Patient/{pid}/procedure-history"))
    return Response(json.dumps({"patient": f"Patient/{pid}", "procedures": [public(r) for r in records]}, ensure_ascii=False),
                    mimetype="application/json")


@bp.get("/procedure-history")
def registry_pull() -> Response:
    """NDJSON, one procedure per line, for every patient changed since _since (all patients without it)."""
    since = request.args.get("_since")
    try:
        since_ms = reads.instant_ms(since) if since else None
    except ValueError:
        return error(400, f"{since!r} is not a FHIR instant", "value", "?_since")
    engine = _engine()
    patients = reads.patients_changed_since(engine, since_ms)
    g.audit_patients = set(g.get("audit_patients", set())) | set(patients)

    def lines():
        for pid in patients:
            for r in procedure_history(reads.compartment(engine, pid), f"Patient/{pid}"):
                yield json.dumps(public(r), ensure_ascii=False) + "\n"

    return Response(lines(), mimetype="application/x-ndjson")
