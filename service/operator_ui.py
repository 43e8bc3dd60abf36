"""Operator views: the interactive API reference at /docs (packaged Swagger UI, nothing fetched at run
time) and the RQ queue dashboard at /rq (rq-dashboard, behind the same auth as the API: admin scope).

The dashboard's actions (delete, requeue, empty, compact) change state: they take POST only, and only from a
page of this gateway (Origin, else Referer, naming our own origin), so that no other site can drive them."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, Request, Response
from flask_swagger_ui import get_swaggerui_blueprint

from service.outcome import error
from service.paging import base_url

log = logging.getLogger("gateway.operator")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
DASHBOARD = "/rq"
DASHBOARD_PATHS = DASHBOARD + "/"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin(request: Request) -> bool:
    own = _origin(base_url())
    origin = request.headers.get("Origin")
    if origin:  # browsers send it on every POST; "null" (sandboxed or privacy-stripped) never matches
        return origin.lower() == own
    referer = request.headers.get("Referer")
    return referer is not None and _origin(referer) == own


def guard_actions(request: Request) -> Response | None:
    """Before every handler once the dashboard is mounted (service/__init__.py): 405 for a dashboard action by GET;
    403 for a state-changing request from another origin (or none named)."""
    if not request.path.startswith(DASHBOARD_PATHS) or request.url_rule is None:
        return None
    action = "POST" in (request.url_rule.methods or set())
    if action and request.method in SAFE_METHODS:
        return error(405, "queue dashboard actions take POST only", "not-supported")
    if request.method not in SAFE_METHODS and not _same_origin(request):
        return error(403, "queue dashboard actions are accepted from this gateway's own pages only "
                          "(the Origin or Referer header must name this gateway)", "forbidden")
    return None


def install(app: Flask) -> bool:
    """Mounts /docs and, with a Redis URL, the dashboard at /rq: True when it is mounted (its actions then need
    guard_actions before every handler)."""
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.yaml", config={"app_name": "Oncology FHIR gateway"}))
    url = app.extensions.get("redis_url")
    if not url:
        log.info("queue dashboard not mounted: in-process mode has no Redis URL for it")
        return False
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = url
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=DASHBOARD)
    return True
