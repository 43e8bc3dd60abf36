"""Per-client rate limits (a fixed window per client, counters in Redis so every gateway process shares them),
and a per-address limit on failed authentications that is checked before any credential is verified.

The per-client count costs one Redis round trip (INCR, EXPIRE) before the handler runs. A view marked
@deferred (the cached $everything) sends those two commands in the pipeline of its own first Redis call
instead, so that a cached read is one round trip; whatever way such a view ends, the count is taken and a
client over its limit gets the 429, never the view's answer.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from flask import Flask, Request, Response, current_app
from flask.ctx import _AppCtxGlobals
from flask.globals import _cv_app, _cv_request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from mappings.errors import Issue
from service import scopes
from service.outcome import outcome_response

log = logging.getLogger("gateway.rate_limit")
FAILURES = "auth-failures"  # namespace of the failed-authentication counters


def client_address(req: Request | None = None) -> str:
    """The caller's address: the peer, or with GATEWAY_TRUST_PROXY_HEADERS=1 the last X-Forwarded-For entry
    (the one our own proxy appended; entries before it are the client's to forge). Worked out once per request
    (the failure check, the rate key and the audit event all ask) and kept in the WSGI environ."""
    ctx = _cv_request.get()
    req = req or ctx.request
    environ = req.environ
    found = environ.get(_ADDRESS)
    if found is None:
        found = environ[_ADDRESS] = _address(req, ctx.app.config.get("TRUST_PROXY_HEADERS"))
    return found


_ADDRESS = "gateway.client_address"  # the environ key client_address() keeps its answer under


def _address(req: Request, trust_proxy: object) -> str:
    forwarded = req.environ.get("HTTP_X_FORWARDED_FOR") if trust_proxy else None  # request.headers.get(...)
    if forwarded and forwarded.split(",")[-1].strip():
        return forwarded.split(",")[-1].strip()
    return req.remote_addr or "unknown"


def _client_key(g: _AppCtxGlobals) -> str:
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
    if not _local_failures:
        return False  # no address failed here (the usual case): nothing to look up
    seen = _local_failures.get(client_address())
    if seen is None:
        return False
    limiter, item = _failure_limit()
    if time.monotonic() - seen > item.get_expiry():
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


class ClientLimit:
    """GATEWAY_RATE_LIMIT ("1200/minute", the `limits` syntax) per client, over every route together: a fixed
    window counted in Redis under ratelimit:{<client>}:<window number>. With Redis down nothing is counted and
    requests go on (the handlers answer uncached or 503): a limiter must never turn an outage into 500s."""

    def __init__(self, client: redis.Redis, spec: str) -> None:
        item = parse(spec)
        self.client, self.amount, self.seconds = client, item.amount, item.get_expiry()
        self.spec, self.enabled = spec, True

    def queue(self, pipe, g: _AppCtxGlobals) -> Callable[[list], None]:
        """Add this request's count to pipe; the returned check takes pipe.execute()'s results (these two
        first) and raises TooManyRequests when the client is over its limit."""
        now = time.time()
        window = int(now // self.seconds)
        key = f"ratelimit:{{{_client_key(g)}}}:{window}"
        pipe.incr(key)
        pipe.expire(key, self.seconds + 1)
        retry_after = max(1, int((window + 1) * self.seconds - now + 0.999))

        def check(results: list) -> None:
            if int(results[0]) > self.amount:
                raise TooManyRequests(f"rate limit exceeded: {self.spec} per client; retry after {retry_after} s",
                                      retry_after=retry_after)
        return check

    def hit(self, g: _AppCtxGlobals) -> None:
        """Count this request now (one round trip); TooManyRequests when over the limit."""
        try:
            pipe = self.client.pipeline(transaction=False)
            check = self.queue(pipe, g)
            results = pipe.execute()
        except redis.RedisError:
            log.warning("rate-limit counter unavailable")
            return
        check(results)


V = TypeVar("V", bound=Callable[..., object])


def deferred(view: V) -> V:
    """The view counts the request in its own first Redis pipeline (queue_hit); if it ends without doing so
    (an early answer, an error), the count is taken here, and a client over its limit gets the 429 instead."""
    @functools.wraps(view)
    def counted(*args, **kwargs):
        try:
            answer = view(*args, **kwargs)
        except TooManyRequests:
            raise
        except Exception:
            take_pending()
            raise
        take_pending()
        return answer

    counted.rate_limit_deferred = True  # type: ignore[attr-defined]
    return counted  # type: ignore[return-value]


def _limit(app: Flask) -> ClientLimit | None:
    limit = app.extensions.get("rate_limit")
    return limit if limit is not None and limit.enabled else None


def queue_hit(pipe) -> tuple[int, Callable[[list | None], None]]:
    """In a @deferred view: this request's count, added at the head of the view's pipeline. (how many results
    of pipe.execute() are the count's, a check to call with those results, or None when the pipeline failed)."""
    app_ctx = _cv_app.get()
    g = app_ctx.g
    limit = _limit(app_ctx.app) if g.pop("rate_limit_pending", False) else None
    if limit is None:
        return 0, lambda results: None
    check = limit.queue(pipe, g)

    def checked(results: list | None) -> None:
        if results is None:
            log.warning("rate-limit counter unavailable")
            return
        check(results)
    return 2, checked


def take_pending() -> None:
    """Count a @deferred view's request now, unless it has been counted already."""
    app_ctx = _cv_app.get()
    g = app_ctx.g
    if g.pop("rate_limit_pending", False) and (limit := _limit(app_ctx.app)) is not None:
        limit.hit(g)


def install(app: Flask) -> Callable[[Request, _AppCtxGlobals], None]:
    """Sets up both limits; returns the step that counts each authenticated request (before its handler, once
    g.principal is known: service/__init__.py), raising TooManyRequests for a client over its limit."""
    storage = app.extensions.get("redis_url") or "memory://"
    app.extensions["auth_failure_limit"] = (FixedWindowRateLimiter(storage_from_string(storage)),
                                            parse(app.config["AUTH_FAILURE_LIMIT"]))
    # No X-RateLimit-* headers: they would cost a second Redis round trip on every request (bench/gateway.py);
    # a 429 carries Retry-After, set by the error handler from TooManyRequests.retry_after.
    limit = ClientLimit(app.extensions["redis"], app.config["RATE_LIMIT"])
    app.extensions["rate_limit"] = limit
    views = app.view_functions

    def count_request(request: Request, g: _AppCtxGlobals) -> None:
        if not limit.enabled or scopes.is_public(request.path):
            return
        view = views.get(request.endpoint or "")
        if getattr(view, "rate_limit_deferred", False):
            g.rate_limit_pending = True
            return
        limit.hit(g)

    return count_request
