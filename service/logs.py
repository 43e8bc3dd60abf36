"""Structured logs: one JSON line per request with a request id that follows the request into its jobs.

Lines carry the route template, never the path: paths hold patient ids, and logs hold no PHI.
"""
from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import ClassVar

from flask import Flask, Response, g, request

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")  # always fullmatch: "$" also matches before a final newline
log = logging.getLogger("gateway.request")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    STANDARD: ClassVar[frozenset[str]] = frozenset(vars(logging.makeLogRecord({})))
    # RQ's worker logs a failed job with its call arguments as extras (`arguments`, `kwargs`): those are patient
    # references and bundles, and logs hold no PHI, so they never reach a line.
    WITHHELD: ClassVar[frozenset[str]] = frozenset({"arguments", "kwargs"})

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        line.update({k: v for k, v in vars(record).items() if k not in self.STANDARD and k not in self.WITHHELD and not k.startswith("_")})
        if record.exc_info:
            line["exc"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(line, default=str)


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # its access lines carry raw paths


def current_request_id() -> str | None:
    return g.get("request_id") if g else None


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
