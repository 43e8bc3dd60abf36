"""The store of record as the workers see it: the same database as the gateway (GATEWAY_DATABASE_URL, else the
SQLite file of the data folder), one engine per process."""
from __future__ import annotations

from sqlalchemy import Engine

from store import db


def store() -> Engine:
    return db.engine_for(db.default_url())
