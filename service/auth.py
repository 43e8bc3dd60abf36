"""Authentication: OAuth2 bearer JWTs verified against configured keys, or API keys stored hashed.

Configuration (environment): GATEWAY_JWT_JWKS_FILE (a JWKS JSON file of public keys), with GATEWAY_JWT_ISSUER
and GATEWAY_JWT_AUDIENCE required alongside it; GATEWAY_API_KEYS (JSON list of {"client", "sha256", "scopes"}),
plus keys created with `python -m service.apikeys create` (their SHA-256 kept in the store of record). Raw keys are never
stored. The development key of `python -m service` lives in its process memory only (DEVELOPMENT_KEY_SHA256)
and stops working as soon as any real credential is configured.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import jwt
from flask import Flask, Request, Response
from flask.ctx import _AppCtxGlobals
from sqlalchemy import Engine, select

from mappings.errors import Issue
from service import rate_limit, scopes
from service.outcome import outcome_response
from store import db
from store.schema import api_keys

log = logging.getLogger("gateway.auth")
# A token is only ever checked against keys of its own algorithm: PyJWT raises TypeError (a 500 here) when
# an RS256 token meets an EC key, instead of refusing it.
ALGORITHMS = ["RS256", "ES384"]
DEVELOPMENT_CLIENT = "local-development"
DEVELOPMENT_SCOPES = ("system/*.read", "system/*.write", "admin")


@dataclass(frozen=True)
class Principal:
    client: str
    scopes: frozenset[str]
    method: str  # "jwt" | "api-key" | "development-key"


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


def _candidate_keys(header: dict, keys: jwt.PyJWKSet) -> list[jwt.PyJWK]:
    """The configured key the token names (`kid` is required), if its algorithm is the token's."""
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS:
        raise AuthError(f"the token's algorithm must be one of {', '.join(ALGORITHMS)}")
    if not isinstance(kid, str) or not kid:
        raise AuthError("the token's header must name its signing key (kid)")
    # algorithm_name is the JWK's `alg`, else the one its key type and curve imply (RSA: RS256, P-384: ES384).
    candidates = [k for k in keys.keys if k.key_id == kid and k.algorithm_name == alg]
    if not candidates:
        raise AuthError("no configured key matches the token's key id and algorithm")
    return candidates


def _check_claims(claims: dict, max_lifetime: int) -> None:
    """Claim types and lifetime: PyJWT accepts `exp` as a numeric string and any JSON type elsewhere."""
    for name in ("exp", "iat", "nbf"):
        # RFC 7519 NumericDate: a JSON number (fractions allowed), never a string or a boolean.
        if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], (int, float))):
            raise AuthError(f"invalid token: '{name}' must be a number (seconds since the epoch)")
    for name in ("sub", "client_id", "scope", "iss"):
        if name in claims and not isinstance(claims[name], str):
            raise AuthError(f"invalid token: '{name}' must be a string")
    if "scp" in claims and not (isinstance(claims["scp"], list) and all(isinstance(s, str) for s in claims["scp"])):
        raise AuthError("invalid token: 'scp' must be a list of strings")
    if claims["exp"] - int(time.time()) > max_lifetime:
        raise AuthError(f"invalid token: it expires more than {max_lifetime} s from now")


def _verify_jwt(app: Flask, token: str) -> Principal:
    config = app.config
    if not config.get("JWT_JWKS_FILE"):
        raise AuthError("bearer JWTs are not accepted: no signing keys are configured")
    try:
        header = jwt.get_unverified_header(token)
        key = _candidate_keys(header, _jwks(config["JWT_JWKS_FILE"]))[0]
        claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=config["JWT_AUDIENCE"],
                            issuer=config["JWT_ISSUER"], options={"require": ["exp", "iss", "aud", "sub"]})
    except (jwt.PyJWTError, TypeError, ValueError) as exc:
        raise AuthError(f"invalid token: {exc}") from None
    _check_claims(claims, int(config["JWT_MAX_LIFETIME"]))
    granted = claims["scope"].split() if "scope" in claims else list(claims.get("scp", []))
    return Principal(claims.get("client_id") or claims["sub"], frozenset(granted), "jwt")


@lru_cache(maxsize=8)
def _parse_keys(raw: str) -> dict[str, dict]:
    return {e["sha256"]: e for e in json.loads(raw)}


def _principal(entry: dict) -> Principal:
    return Principal(entry["client"], frozenset(entry["scopes"]), "api-key")


@lru_cache(maxsize=1024)
def _configured_principal(raw: str, digest: str) -> Principal | None:
    # Each configured key's Principal is built once, not per request; keyed by the setting's text, so that a
    # changed GATEWAY_API_KEYS is read afresh.
    entry = _parse_keys(raw).get(digest)
    return _principal(entry) if entry else None


def _configured_key(app: Flask, digest: str) -> Principal | None:
    raw = app.config.get("API_KEYS") or "[]"
    if isinstance(raw, str):
        return _configured_principal(raw, digest)
    entry = {e["sha256"]: e for e in raw}.get(digest)
    return _principal(entry) if entry else None


# Stored keys (table api_keys) are remembered by each process for a few seconds: a lookup per request would add
# a database round trip to every cached read. A revoked key therefore stops working within KEY_CACHE_SECONDS.
# What is remembered is the key's Principal, so that a request in that time builds nothing.
KEY_CACHE_SECONDS = 5.0
_key_cache: dict[str, tuple[float, Principal]] = {}


def _stored_key(app: Flask, digest: str) -> Principal | None:
    now = time.monotonic()
    cached = _key_cache.get(digest)
    if cached and now - cached[0] < KEY_CACHE_SECONDS:
        return cached[1]
    with db.reading(app.extensions["store"]) as conn:
        row = conn.execute(select(api_keys.c.client, api_keys.c.scopes).where(api_keys.c.digest == digest)).first()
    if row is None:
        return None  # unknown keys are not cached: a key created a moment ago works at once
    principal = _principal({"client": row.client, "scopes": json.loads(row.scopes)})
    if len(_key_cache) > 10000:
        _key_cache.clear()
    _key_cache[digest] = (now, principal)
    return principal


def real_credentials_configured(config: dict, engine: Engine) -> bool:
    """GATEWAY_API_KEYS, a JWKS file, or any key created with service.apikeys."""
    keys = config.get("API_KEYS") or "[]"
    if config.get("JWT_JWKS_FILE") or (json.loads(keys) if isinstance(keys, str) else keys):
        return True
    with db.reading(engine) as conn:
        return conn.execute(select(api_keys.c.digest).where(api_keys.c.client != DEVELOPMENT_CLIENT).limit(1)).first() is not None


def _development_principal(app: Flask, digest: str) -> Principal | None:
    expected = app.config.get("DEVELOPMENT_KEY_SHA256")
    if not expected or digest != expected:
        return None
    if real_credentials_configured(app.config, app.extensions["store"]):
        raise AuthError("the development key is not accepted once real credentials are configured")
    return Principal(DEVELOPMENT_CLIENT, frozenset(DEVELOPMENT_SCOPES), "development-key")


def _verify_api_key(app: Flask, raw_key: str) -> Principal:
    digest = key_hash(raw_key)
    development = _development_principal(app, digest)
    if development:
        return development
    principal = _configured_key(app, digest) or _stored_key(app, digest)
    # The development key lives in process memory only: a stored key of that client is never honoured.
    if principal is None or principal.client == DEVELOPMENT_CLIENT:
        raise AuthError("unknown API key")
    return principal


def authenticate(app: Flask, request: Request) -> Principal:
    # The WSGI environ holds the headers as request.headers.get would return them (HTTP_X_API_KEY is "X-API-Key").
    environ = request.environ
    api_key = environ.get("HTTP_X_API_KEY")
    if api_key:
        return _verify_api_key(app, api_key)
    scheme, _, credential = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise AuthError("authentication required: send 'Authorization: Bearer <token>' or 'X-API-Key'")
    credential = credential.strip()
    return _verify_jwt(app, credential) if credential.count(".") == 2 else _verify_api_key(app, credential)


def _deny(message: str, status: int):
    code = "login" if status == 401 else "forbidden"
    response = outcome_response([Issue("$", message, code)], status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="oncology-gateway"'
    return response


def check_configuration(config: dict) -> None:
    """JWTs without a required issuer and audience would accept any token the key holder ever signed."""
    if config.get("JWT_JWKS_FILE") and not (config.get("JWT_ISSUER") and config.get("JWT_AUDIENCE")):
        raise RuntimeError("GATEWAY_JWT_JWKS_FILE is set: GATEWAY_JWT_ISSUER and GATEWAY_JWT_AUDIENCE are required too")


def check_access(app: Flask, request: Request, g: _AppCtxGlobals) -> Response | None:
    """Before every handler (service/__init__.py): the caller's Principal in g.principal, or the refusal (401, 403,
    or 429 for an address that keeps failing). Public paths need no credentials."""
    g.principal = None
    if scopes.is_public(request.path):
        return None
    # Before any credential is checked: an address that keeps failing is refused without verification work.
    if rate_limit.auth_failures_exceeded():
        return rate_limit.too_many_failures()
    try:
        principal = authenticate(app, request)
    except AuthError as exc:
        log.info("authentication failed: %s", exc)
        rate_limit.count_auth_failure()
        return _deny(str(exc), exc.status)
    g.principal = principal
    needed = scopes.required(request)
    if not scopes.allowed(principal.scopes, needed):
        return _deny(f"missing scope: one of {', '.join(sorted(needed))}", 403)
    return None
