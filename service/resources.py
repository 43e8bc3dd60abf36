"""FHIR read, vread and search on the store."""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, request

from mappings.fhir_validation import model_class
from service.outcome import FHIR_JSON, error, fhir_response
from service.paging import searchset
from store import reads
from store.search import SEARCHABLE, search

bp = Blueprint("resources", __name__)


def _known_type(rtype: str) -> bool:
    try:
        model_class(rtype)
        return True
    except (ValueError, AttributeError, KeyError):
        return False


def _resource_response(raw: bytes | None, rtype: str, rid: str) -> Response:
    if raw is None:
        return error(404, f"{rtype}/{rid} is not known", "not-found")
    meta = json.loads(raw)["meta"]
    return Response(raw, mimetype=FHIR_JSON, headers={"ETag": f'W/"{meta["versionId"]}"', "Last-Modified": meta["lastUpdated"]})


@bp.get("/<rtype>/<rid>")
def read(rtype: str, rid: str) -> Response:
    if not _known_type(rtype):
        return error(404, f"'{rtype}' is not a FHIR R4 resource type", "not-found")
    return _resource_response(reads.read(current_app.extensions["redis"], rtype, rid), rtype, rid)


@bp.get("/<rtype>/<rid>/_history/<int:version>")
def vread(rtype: str, rid: str, version: int) -> Response:
    if not _known_type(rtype):
        return error(404, f"'{rtype}' is not a FHIR R4 resource type", "not-found")
    return _resource_response(reads.vread(current_app.extensions["redis"], rtype, rid, version), rtype, rid)


@bp.get("/<rtype>")
def search_type(rtype: str) -> Response:
    if rtype not in SEARCHABLE:
        return error(404, f"search is offered for {', '.join(SEARCHABLE)}", "not-supported")
    params = request.args.to_dict(flat=False)
    return fhir_response(searchset(search(current_app.extensions["redis"], rtype, params), params, f"/{rtype}"))
