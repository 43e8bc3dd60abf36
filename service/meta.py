"""Service-level endpoints: health, the CapabilityStatement and the OpenAPI contract."""
from __future__ import annotations

import json
from pathlib import Path

import redis
from flask import Blueprint, Response, current_app

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.capability import capability_statement
from service.outcome import fhir_response
from store import db

bp = Blueprint("meta", __name__)
OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.yaml"  # package data: an installed wheel serves it too


@bp.get("/healthz")
def healthz() -> Response:
    """503 when the database of record is down; Redis down is 'degraded' (served uncached, jobs wait)."""
    try:
        current_app.extensions["redis"].ping()
        redis_ok = True
    except (redis.RedisError, OSError):
        redis_ok = False
    engine = current_app.extensions["store"]
    try:
        with db.reading(engine) as conn:
            conn.execute(text("SELECT 1"))
        database_ok = True
    except (db.DatabaseUnavailable, SQLAlchemyError):
        database_ok = False
    body = {"status": "ok" if redis_ok and database_ok else ("degraded" if database_ok else "down"),
            "database": "up" if database_ok else "down", "databaseEngine": engine.dialect.name,
            "redis": "up" if redis_ok else "down", "redisMode": current_app.extensions["redis_mode"]}
    return Response(json.dumps(body), status=200 if database_ok else 503, mimetype="application/json")


@bp.get("/metadata")
def metadata() -> Response:
    from service.fhir_http import check_format

    check_format()
    return fhir_response(capability_statement())


@bp.get("/openapi.yaml")
def openapi() -> Response:
    return Response(OPENAPI_PATH.read_text(encoding="utf-8"), mimetype="application/yaml")
