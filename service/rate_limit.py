"""Per-client rate limits (Flask-Limiter, counters in Redis so every gateway process shares them)."""
from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter

from service import scopes


def _client_key() -> str:
    principal = g.get("principal")
    return f"client:{principal.client}" if principal else f"addr:{request.remote_addr}"


def install(app: Flask) -> Limiter:
    storage = app.extensions.get("redis_url") or "memory://"
    # While Redis is down, requests fail with 503 in the handlers; the limiter must not turn that into 500s.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    # No X-RateLimit-* headers: computing them costs a second Redis round trip on every request (measured in
    # bench/gateway.py); a 429 still carries Retry-After, set by the error handler.
    limiter = Limiter(key_func=_client_key, app=app, storage_uri=storage, default_limits=[app.config["RATE_LIMIT"]],
                      headers_enabled=False, key_prefix="ratelimit")

    @limiter.request_filter
    def exempt() -> bool:
        return scopes.is_public(request.path)

    return limiter
