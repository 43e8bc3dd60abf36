"""Create and revoke API keys: `python -m service.apikeys create --client NAME --scope S [--scope S...]`.

The key is printed once; only its SHA-256 is kept (in Redis, REDIS_URL or the local Redis).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets

import redis

from service.auth import API_KEYS_HASH, DEVELOPMENT_CLIENT, key_hash
from service.config import from_environment
from service.redis_conn import LOCAL_URL


def create_key(client: redis.Redis, name: str, granted: list[str]) -> str:
    if name == DEVELOPMENT_CLIENT:
        # Stored keys of this client are refused by service.auth: the development key lives in process memory only.
        raise ValueError(f"the client name {DEVELOPMENT_CLIENT!r} is reserved for the in-memory development key")
    raw = "ogk_" + secrets.token_urlsafe(32)
    entry = {"client": name, "scopes": granted, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    client.hset(API_KEYS_HASH, key_hash(raw), json.dumps(entry))
    return raw


def revoke_client(client: redis.Redis, name: str) -> int:
    removed = 0
    for digest, raw in client.hgetall(API_KEYS_HASH).items():
        if json.loads(raw)["client"] == name:
            removed += client.hdel(API_KEYS_HASH, digest)
    return removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create")
    create.add_argument("--client", required=True)
    create.add_argument("--scope", action="append", required=True)
    revoke = sub.add_parser("revoke")
    revoke.add_argument("--client", required=True)
    args = parser.parse_args()
    client = redis.Redis.from_url(from_environment()["REDIS_URL"] or LOCAL_URL)
    if args.command == "create":
        print(create_key(client, args.client, args.scope))
    else:
        print(f"revoked {revoke_client(client, args.client)} key(s)")


if __name__ == "__main__":
    main()
