"""Create and revoke API keys: `python -m service.apikeys create --client NAME --scope S [--scope S...]`.

The key is printed once; only its SHA-256 is kept, in the store of record (table api_keys, GATEWAY_DATABASE_URL
or the embedded SQLite file), so keys outlive a Redis flush and work while Redis is down.
"""
from __future__ import annotations

import argparse
import json
import secrets
import time

from sqlalchemy import Engine, delete, insert

from service.auth import DEVELOPMENT_CLIENT, key_hash
from store import db
from store.schema import api_keys


def create_key(engine: Engine, name: str, granted: list[str]) -> str:
    if name == DEVELOPMENT_CLIENT:
        # Stored keys of this client are refused by service.auth: the development key lives in process memory only.
        raise ValueError(f"the client name {DEVELOPMENT_CLIENT!r} is reserved for the in-memory development key")
    raw = "ogk_" + secrets.token_urlsafe(32)
    row = {"digest": key_hash(raw), "client": name, "scopes": json.dumps(granted), "created": int(time.time() * 1000)}
    db.write(engine, lambda conn: conn.execute(insert(api_keys).values(row)))
    return raw


def revoke_client(engine: Engine, name: str) -> int:
    """Every key of the client; gateways stop accepting them within service.auth.KEY_CACHE_SECONDS."""
    return db.write(engine, lambda conn: conn.execute(delete(api_keys).where(api_keys.c.client == name)).rowcount)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create")
    create.add_argument("--client", required=True)
    create.add_argument("--scope", action="append", required=True)
    revoke = sub.add_parser("revoke")
    revoke.add_argument("--client", required=True)
    args = parser.parse_args()
    engine = db.engine_for(db.default_url())
    if args.command == "create":
        print(create_key(engine, args.client, args.scope))
    else:
        print(f"revoked {revoke_client(engine, args.client)} key(s)")


if __name__ == "__main__":
    main()
