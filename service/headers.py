"""Security headers on every response: a Content-Security-Policy, no MIME sniffing, no framing, no caching of
patient data. (The Server header is the HTTP server's: `python -m service` names no versions, see
service/__main__.py; gunicorn sends a versionless "gunicorn".)"""
from __future__ import annotations

from flask import Request, Response

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


FIXED = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"))
NO_STORE = ("Cache-Control", "no-store")


def secure(request: Request, response: Response) -> None:
    """After every handler (service/__init__.py): the security headers, replacing any the handler set."""
    path = request.path
    policy = OPERATOR_POLICY if path.startswith(OPERATOR_PREFIXES) else REVIEW_POLICY if path in REVIEW_PAGES else STRICT_POLICY
    private = not scopes.is_public(path)
    headers = response.headers
    # One pass over the handler's headers instead of one per header set: a name already there is replaced
    # (Headers.set), any other is appended (Headers.add), which is what Headers.set does for an absent name.
    present: dict[str, str] = {}
    for name, value in headers.items():
        present.setdefault(name.lower(), value)
    for name, value in (("Content-Security-Policy", policy), *FIXED):
        if name.lower() in present:
            headers.set(name, value)
        else:
            headers.add(name, value)
    if private and "no-store" not in present.get("cache-control", ""):
        # Everything behind authentication is patient data or about it: no shared or browser cache keeps it.
        # ETag stays, so a client may still revalidate explicitly with If-None-Match.
        headers.set(*NO_STORE)
