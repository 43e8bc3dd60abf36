"""Service-level endpoints: health, the CapabilityStatement and the OpenAPI contract."""
from __future__ import annotations

import json
from pathlib import Path

import redis
from flask import Blueprint, Response, current_app

from service.capability import capability_statement
from service.outcome import fhir_response

bp = Blueprint("meta", __name__)
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@bp.get("/healthz")
def healthz() -> Response:
    try:
        current_app.extensions["redis"].ping()
        redis_ok = True
    except (redis.RedisError, OSError):
        redis_ok = False
    body = {"status": "ok" if redis_ok else "degraded", "redis": "up" if redis_ok else "down",
            "redisMode": current_app.extensions["redis_mode"]}
    return Response(json.dumps(body), status=200 if redis_ok else 503, mimetype="application/json")


@bp.get("/metadata")
def metadata() -> Response:
    return fhir_response(capability_statement())


@bp.get("/openapi.yaml")
def openapi() -> Response:
    return Response(OPENAPI_PATH.read_text(encoding="utf-8"), mimetype="application/yaml")
