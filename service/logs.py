"""Structured logs: one JSON line per request with a request id that follows the request into its jobs.

Lines carry the route template, never the path: paths hold patient ids, and logs hold no PHI.
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from workers.logs import JsonFormatter, configure  # noqa: F401  (one format for gateway and workers)

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")  # always fullmatch: "$" also matches before a final newline
log = logging.getLogger("gateway.request")


def install(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        principal = g.get("principal")
        log.info("request", extra={
            "request_id": g.get("request_id"), "method": request.method,
            "route": request.url_rule.rule if request.url_rule else "(unmatched)",
            "status": response.status_code, "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
            "client": principal.client if principal else None,
        })
        return response
