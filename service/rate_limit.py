"""Per-client rate limits (Flask-Limiter, counters in Redis so every gateway process shares them), and a
per-address limit on failed authentications that is checked before any credential is verified."""
from __future__ import annotations

import logging
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from mappings.errors import Issue
from service import scopes
from service.outcome import outcome_response

log = logging.getLogger("gateway.rate_limit")
FAILURES = "auth-failures"  # namespace of the failed-authentication counters


def client_address() -> str:
    """The caller's address: the peer, or with GATEWAY_TRUST_PROXY_HEADERS=1 the last X-Forwarded-For entry
    (the one our own proxy appended; entries before it are the client's to forge)."""
    forwarded = request.headers.get("X-Forwarded-For") if current_app.config.get("TRUST_PROXY_HEADERS") else None
    if forwarded and forwarded.split(",")[-1].strip():
        return forwarded.split(",")[-1].strip()
    return request.remote_addr or "unknown"


def _client_key() -> str:
    principal = g.get("principal")
    return f"client:{principal.client}" if principal else f"addr:{client_address()}"


def _failure_limit():
    return current_app.extensions["auth_failure_limit"]


# Addresses this process saw fail, with when: only they are checked against the shared counter, which saves a
# Redis round trip (~0.5 ms measured) on every request of clients that never fail. An address failing only in
# other processes gets at most one more attempt here per window before its first local failure.
_local_failures: dict[str, float] = {}


def auth_failures_exceeded() -> bool:
    """True when this address has used up its failed authentications for the current window."""
    limiter, item = _failure_limit()
    seen = _local_failures.get(client_address())
    if seen is None or time.monotonic() - seen > item.get_expiry():
        return False
    try:
        return not limiter.test(item, FAILURES, client_address())
    except Exception:  # noqa: BLE001 - like Flask-Limiter's swallowed errors: a Redis outage answers 503 elsewhere
        log.warning("failed-authentication counter unavailable")
        return False


def count_auth_failure() -> None:
    limiter, item = _failure_limit()
    if len(_local_failures) > 100_000:  # a spray from many addresses must not grow this without bound
        _local_failures.clear()
    _local_failures[client_address()] = time.monotonic()
    try:
        limiter.hit(item, FAILURES, client_address())
    except Exception:  # noqa: BLE001 - see auth_failures_exceeded
        log.warning("failed-authentication counter unavailable")


def too_many_failures() -> Response:
    _, item = _failure_limit()
    response = outcome_response([Issue("$", f"too many failed authentications from this address (limit {item}); retry later",
                                       "throttled")], 429)
    response.headers["Retry-After"] = str(item.get_expiry())
    return response


def install(app: Flask) -> Limiter:
    storage = app.extensions.get("redis_url") or "memory://"
    # While Redis is down, requests fail with 503 in the handlers; the limiter must not turn that into 500s.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.extensions["auth_failure_limit"] = (FixedWindowRateLimiter(storage_from_string(storage)),
                                            parse(app.config["AUTH_FAILURE_LIMIT"]))
    # No X-RateLimit-* headers: computing them costs a second Redis round trip on every request (measured in
    # bench/gateway.py); a 429 still carries Retry-After, set by the error handler.
    limiter = Limiter(key_func=_client_key, app=app, storage_uri=storage, default_limits=[app.config["RATE_LIMIT"]],
                      headers_enabled=False, key_prefix="ratelimit")

    @limiter.request_filter
    def exempt() -> bool:
        return scopes.is_public(request.path)

    return limiter
