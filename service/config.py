"""Gateway configuration: documented defaults, overridden by environment variables (see README)."""
from __future__ import annotations

import os

DEFAULTS = {
    "REDIS_URL": None,                 # redis://host:port/db; unset = embedded defaults (service/redis_conn.py)
    "MAX_CONTENT_LENGTH": 5 * 1024 * 1024,  # bytes of one request body; larger gives 413
    "GATEWAY_HOST": "127.0.0.1",
    "GATEWAY_PORT": 8080,
    "MAX_BUNDLE_ENTRIES": 10000,       # entries of one posted Bundle; more gives 413
    "JWT_JWKS_FILE": None,             # JWKS JSON file with the public keys that sign accepted JWTs
    "JWT_ISSUER": None,
    "JWT_AUDIENCE": None,
    "API_KEYS": None,                  # JSON list of {"client", "sha256", "scopes"}
    "RATE_LIMIT": "1200/minute",       # per client (Flask-Limiter syntax)
}
# Environment variable -> (config key, type).
ENVIRONMENT = {
    "REDIS_URL": ("REDIS_URL", str),
    "GATEWAY_MAX_BODY_BYTES": ("MAX_CONTENT_LENGTH", int),
    "GATEWAY_HOST": ("GATEWAY_HOST", str),
    "GATEWAY_PORT": ("GATEWAY_PORT", int),
    "GATEWAY_MAX_BUNDLE_ENTRIES": ("MAX_BUNDLE_ENTRIES", int),
    "GATEWAY_JWT_JWKS_FILE": ("JWT_JWKS_FILE", str),
    "GATEWAY_JWT_ISSUER": ("JWT_ISSUER", str),
    "GATEWAY_JWT_AUDIENCE": ("JWT_AUDIENCE", str),
    "GATEWAY_API_KEYS": ("API_KEYS", str),
    "GATEWAY_RATE_LIMIT": ("RATE_LIMIT", str),
}


def from_environment(environ: dict[str, str] | None = None) -> dict:
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for name, (key, cast) in ENVIRONMENT.items():
        if environ.get(name):
            config[key] = cast(environ[name])
    return config
