"""Structured logs: one JSON line per request with a request id that follows the request into its jobs.

Lines carry the route template, never the path: paths hold patient ids, and logs hold no PHI.
"""
from __future__ import annotations

import logging
import random
import re
import time

from flask import Request, Response
from flask.ctx import _AppCtxGlobals

from workers.logs import JsonFormatter, configure  # noqa: F401  (one format for gateway and workers)

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")  # always fullmatch: "$" also matches before a final newline
log = logging.getLogger("gateway.request")


def new_request_id() -> str:
    # 32 random hex digits, as uuid4().hex gave, from the random module's generator instead of a getrandom system
    # call per request (a request id correlates lines, it guards nothing; the module reseeds itself in a forked
    # child, so gunicorn workers do not repeat each other's ids).
    return f"{random.getrandbits(128):032x}"


def start(request: Request, g: _AppCtxGlobals) -> None:
    """First thing of every request: its id (the caller's, when well formed) and its clock (logs and metrics)."""
    given = request.environ.get("HTTP_X_REQUEST_ID", "")  # what request.headers.get("X-Request-ID", "") reads
    g.request_id = given if REQUEST_ID.fullmatch(given) else new_request_id()
    g.started = time.perf_counter()


def finish(request: Request, g: _AppCtxGlobals, response: Response, route: str, elapsed: float) -> None:
    """The request id on the answer and the request's log line (route template, never the path)."""
    request_id = g.get("request_id")
    response.headers["X-Request-ID"] = request_id or ""
    if not log.isEnabledFor(logging.INFO):
        return  # the line's fields are built only for a logger that will write them
    principal = g.get("principal")
    log.info("request", extra={
        "request_id": request_id, "method": request.method, "route": route,
        "status": response.status_code, "duration_ms": round(elapsed * 1000, 2),
        "client": principal.client if principal else None,
    })
