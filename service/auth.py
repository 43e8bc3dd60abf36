"""Authentication: OAuth2 bearer JWTs verified against configured keys, or API keys stored hashed.

Configuration (environment): GATEWAY_JWT_JWKS_FILE (a JWKS JSON file of public keys), GATEWAY_JWT_ISSUER,
GATEWAY_JWT_AUDIENCE; GATEWAY_API_KEYS (JSON list of {"client", "sha256", "scopes"}), plus keys created
with `python -m service.apikeys create` (their SHA-256 kept in Redis). Raw keys are never stored.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import jwt
from flask import Flask, current_app, g, request

from mappings.errors import Issue
from service import scopes
from service.outcome import outcome_response

log = logging.getLogger("gateway.auth")
ALGORITHMS = ["RS256", "ES384"]
API_KEYS_HASH = "auth:api-keys"


@dataclass(frozen=True)
class Principal:
    client: str
    scopes: frozenset[str]
    method: str  # "jwt" | "api-key"


class AuthError(Exception):
    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


@lru_cache(maxsize=8)
def _jwks(path: str) -> jwt.PyJWKSet:
    with open(path, encoding="utf-8") as handle:
        return jwt.PyJWKSet.from_dict(json.load(handle))


def _verify_jwt(token: str) -> Principal:
    config = current_app.config
    if not config.get("JWT_JWKS_FILE"):
        raise AuthError("bearer JWTs are not accepted: no signing keys are configured")
    try:
        header = jwt.get_unverified_header(token)
        keys = _jwks(config["JWT_JWKS_FILE"])
        candidates = [k for k in keys.keys if not header.get("kid") or k.key_id == header.get("kid")]
        if not candidates:
            raise AuthError("the token's key id is not among the configured keys")
        claims = jwt.decode(token, candidates[0].key, algorithms=ALGORITHMS, audience=config.get("JWT_AUDIENCE"),
                            issuer=config.get("JWT_ISSUER"), options={"require": ["exp", "iss", "aud", "sub"]})
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    granted = claims.get("scope", "").split() if isinstance(claims.get("scope"), str) else list(claims.get("scp", []))
    return Principal(str(claims.get("client_id") or claims["sub"]), frozenset(granted), "jwt")


@lru_cache(maxsize=8)
def _parse_keys(raw: str) -> dict[str, dict]:
    return {e["sha256"]: e for e in json.loads(raw)}


def _configured_keys() -> dict[str, dict]:
    raw = current_app.config.get("API_KEYS") or "[]"
    return _parse_keys(raw) if isinstance(raw, str) else {e["sha256"]: e for e in raw}


# Keys kept in Redis are remembered by each process for a few seconds: a lookup per request would double the
# Redis round trips of a cached read. A revoked key therefore stops working within KEY_CACHE_SECONDS.
KEY_CACHE_SECONDS = 5.0
_key_cache: dict[str, tuple[float, dict | None]] = {}


def _stored_key(digest: str) -> dict | None:
    now = time.monotonic()
    cached = _key_cache.get(digest)
    if cached and now - cached[0] < KEY_CACHE_SECONDS:
        return cached[1]
    stored = current_app.extensions["redis"].hget(API_KEYS_HASH, digest)
    entry = json.loads(stored) if stored else None
    if entry is not None:  # unknown keys are not cached: a key created a moment ago works at once
        if len(_key_cache) > 10000:
            _key_cache.clear()
        _key_cache[digest] = (now, entry)
    return entry


def _verify_api_key(raw_key: str) -> Principal:
    digest = key_hash(raw_key)
    entry = _configured_keys().get(digest) or _stored_key(digest)
    if entry is None:
        raise AuthError("unknown API key")
    return Principal(entry["client"], frozenset(entry["scopes"]), "api-key")


def authenticate() -> Principal:
    header = request.headers.get("Authorization", "")
    api_key = request.headers.get("X-API-Key")
    if api_key:
        return _verify_api_key(api_key)
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise AuthError("authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key'")
    credential = credential.strip()
    return _verify_jwt(credential) if credential.count(".") == 2 else _verify_api_key(credential)


def _deny(message: str, status: int):
    code = "login" if status == 401 else "forbidden"
    response = outcome_response([Issue("$", message, code)], status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="oncology-gateway"'
    return response


def install(app: Flask) -> None:
    @app.before_request
    def check_access():
        g.principal = None
        if scopes.is_public(request.path):
            return None
        try:
            principal = authenticate()
        except AuthError as exc:
            log.info("authentication failed: %s", exc)
            return _deny(str(exc), exc.status)
        g.principal = principal
        needed = scopes.required(request)
        if not scopes.allowed(principal.scopes, needed):
            return _deny(f"missing scope: one of {', '.join(sorted(needed))}", 403)
        return None
