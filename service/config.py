"""Gateway configuration: documented defaults, overridden by environment variables (see README)."""
from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULTS = {
    "REDIS_URL": None,                 # redis://host:port/db; unset = embedded defaults (service/redis_conn.py)
    "DATABASE_URL": None,              # SQLAlchemy URL of the store of record; unset = SQLite in GATEWAY_DATA_DIR (store/db.py)
    "REFERENCE_POLICY": "lenient",     # strict: a reference to a resource not held fails the write; lenient: kept, with a warning
    "MAX_CONTENT_LENGTH": 5 * 1024 * 1024,  # bytes of one request body; larger gives 413
    "GATEWAY_HOST": "127.0.0.1",
    "GATEWAY_PORT": 8080,
    "MAX_BUNDLE_ENTRIES": 10000,       # entries of one posted Bundle; more gives 413
    "JWT_JWKS_FILE": None,             # JWKS JSON file with the public keys that sign accepted JWTs
    "JWT_ISSUER": None,
    "JWT_AUDIENCE": None,
    "API_KEYS": None,                  # JSON list of {"client", "sha256", "scopes"}
    "RATE_LIMIT": "1200/minute",       # per client, all routes together (`limits` syntax; service/rate_limit.py)
    "AUTH_FAILURE_LIMIT": "30/minute",  # failed authentications per client address, checked before verifying
    "JWT_MAX_LIFETIME": 3600,          # seconds: a JWT expiring later than this from now is refused
    "BASE_URL": None,                  # https://host[:port][/prefix] of links and fullUrls; unset: see paging.base_url
    "TRUST_PROXY_HEADERS": 0,          # 1: X-Forwarded-Proto/-Host for links, last X-Forwarded-For for addresses (behind a proxy only)
    "MAX_URL_BYTES": 8192,             # path plus query string; longer gives 414
    "MAX_PARAMETER_VALUES": 100,       # values of one query parameter (repeated and comma-separated); more gives 400
    "AUDIT_REFUSAL_WINDOW": 60.0,      # seconds: refused requests (401/403/429) of one caller beyond the first few are
    "AUDIT_REFUSALS_PER_WINDOW": 10,   # ... (this many) aggregated into one audit row per window (service/audit_refusals.py)
    "AUDIT_REFUSAL_CALLERS": 1000,     # callers tracked per process; refusals of further callers share one row per status
}
# Environment variable -> (config key, type).
ENVIRONMENT = {
    "REDIS_URL": ("REDIS_URL", str),
    "GATEWAY_DATABASE_URL": ("DATABASE_URL", str),
    "GATEWAY_REFERENCE_POLICY": ("REFERENCE_POLICY", str),
    "GATEWAY_MAX_BODY_BYTES": ("MAX_CONTENT_LENGTH", int),
    "GATEWAY_HOST": ("GATEWAY_HOST", str),
    "GATEWAY_PORT": ("GATEWAY_PORT", int),
    "GATEWAY_MAX_BUNDLE_ENTRIES": ("MAX_BUNDLE_ENTRIES", int),
    "GATEWAY_JWT_JWKS_FILE": ("JWT_JWKS_FILE", str),
    "GATEWAY_JWT_ISSUER": ("JWT_ISSUER", str),
    "GATEWAY_JWT_AUDIENCE": ("JWT_AUDIENCE", str),
    "GATEWAY_API_KEYS": ("API_KEYS", str),
    "GATEWAY_RATE_LIMIT": ("RATE_LIMIT", str),
    "GATEWAY_AUTH_FAILURE_LIMIT": ("AUTH_FAILURE_LIMIT", str),
    "GATEWAY_JWT_MAX_LIFETIME_SECONDS": ("JWT_MAX_LIFETIME", int),
    "GATEWAY_BASE_URL": ("BASE_URL", str),
    "GATEWAY_TRUST_PROXY_HEADERS": ("TRUST_PROXY_HEADERS", int),
    "GATEWAY_MAX_URL_BYTES": ("MAX_URL_BYTES", int),
    "GATEWAY_MAX_PARAMETER_VALUES": ("MAX_PARAMETER_VALUES", int),
    "GATEWAY_AUDIT_REFUSAL_WINDOW_SECONDS": ("AUDIT_REFUSAL_WINDOW", float),
    "GATEWAY_AUDIT_REFUSALS_PER_WINDOW": ("AUDIT_REFUSALS_PER_WINDOW", int),
    "GATEWAY_AUDIT_REFUSAL_CALLERS": ("AUDIT_REFUSAL_CALLERS", int),
}


def from_environment(environ: Mapping[str, str] | None = None) -> dict:
    env = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for name, (key, cast) in ENVIRONMENT.items():
        if env.get(name):
            config[key] = cast(env[name])
    return config
