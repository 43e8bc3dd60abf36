"""Gateway configuration: documented defaults, overridden by environment variables (see README)."""
from __future__ import annotations

import os

DEFAULTS = {
    "REDIS_URL": None,                 # redis://host:port/db; unset = embedded defaults (service/redis_conn.py)
    "MAX_CONTENT_LENGTH": 5 * 1024 * 1024,  # bytes of one request body; larger gives 413
    "GATEWAY_HOST": "127.0.0.1",
    "GATEWAY_PORT": 8080,
    "MAX_BUNDLE_ENTRIES": 10000,       # entries of one posted Bundle; more gives 413
}
# Environment variable -> (config key, type).
ENVIRONMENT = {
    "REDIS_URL": ("REDIS_URL", str),
    "GATEWAY_MAX_BODY_BYTES": ("MAX_CONTENT_LENGTH", int),
    "GATEWAY_HOST": ("GATEWAY_HOST", str),
    "GATEWAY_PORT": ("GATEWAY_PORT", int),
    "GATEWAY_MAX_BUNDLE_ENTRIES": ("MAX_BUNDLE_ENTRIES", int),
}


def from_environment(environ: dict[str, str] | None = None) -> dict:
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    for name, (key, cast) in ENVIRONMENT.items():
        if environ.get(name):
            config[key] = cast(environ[name])
    return config
