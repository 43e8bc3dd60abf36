"""Security headers on every response: a Content-Security-Policy, no MIME sniffing, no framing, no caching of
patient data. (The Server header is the HTTP server's: `python -m service` names no versions, see
service/__main__.py; gunicorn sends a versionless "gunicorn".)"""
from __future__ import annotations

from flask import Flask, Response, request

from service import scopes

# API answers and the timeline page run no script at all; the timeline's <style> block and inline SVG need
# inline styles and data: images only.
STRICT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
                 "base-uri 'none'; form-action 'none'")
# Swagger UI (/docs) and rq-dashboard (/rq) are packaged: scripts from this origin only, plus the inline start-up
# script each template carries (rq-dashboard's underscore templates compile with Function, hence 'unsafe-eval').
OPERATOR_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
                   "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
OPERATOR_PREFIXES = ("/docs", "/rq")
# The extraction review page (service/extract.py): its own packaged script and style, and fetch to this origin.
REVIEW_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
                 "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
REVIEW_PAGES = ("/cases/$extract/review",)


def secure(response: Response) -> Response:
    operator = request.path.startswith(OPERATOR_PREFIXES)
    review = request.path in REVIEW_PAGES
    response.headers["Content-Security-Policy"] = OPERATOR_POLICY if operator else REVIEW_POLICY if review else STRICT_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    if not scopes.is_public(request.path) and "no-store" not in response.headers.get("Cache-Control", ""):
        # Everything behind authentication is patient data or about it: no shared or browser cache keeps it.
        # ETag stays, so a client may still revalidate explicitly with If-None-Match.
        response.headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    app.after_request(secure)
