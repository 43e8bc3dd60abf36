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
SET_HERE = frozenset(n.lower() for n, _ in (("Content-Security-Policy", ""), *FIXED, NO_STORE))
# The whole list a response gets when the handler set none of these headers (the usual case), per policy and
# whether the path is behind authentication: appended in one step (see secure).
_APPENDED = {(policy, private): (("Content-Security-Policy", policy), *FIXED, *((NO_STORE,) if private else ()))
             for policy in (STRICT_POLICY, OPERATOR_POLICY, REVIEW_POLICY) for private in (False, True)}


def secure(request: Request, response: Response) -> None:
    """After every handler (service/__init__.py): the security headers, replacing any the handler set."""
    path = request.path
    policy = OPERATOR_POLICY if path.startswith(OPERATOR_PREFIXES) else REVIEW_POLICY if path in REVIEW_PAGES else STRICT_POLICY
    private = not scopes.is_public(path)
    headers = response.headers
    if SET_HERE.isdisjoint([name.lower() for name, _ in headers]):
        # None of them set by the handler: our constant (already valid) header lines are appended as they are, as
        # Headers.add would append them one by one after checking each value (a sixth of this step's cost).
        headers._list.extend(_APPENDED[policy, private])  # noqa: SLF001 - werkzeug's Headers keeps its lines here
        return
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
