"""Operator views: the interactive API reference at /docs (packaged Swagger UI, nothing fetched at run
time) and the RQ queue dashboard at /rq (rq-dashboard, behind the same auth as the API: admin scope)."""
from __future__ import annotations

import logging

import rq_dashboard
from flask import Flask
from flask_swagger_ui import get_swaggerui_blueprint

log = logging.getLogger("gateway.operator")


def install(app: Flask) -> None:
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.yaml", config={"app_name": "Oncology FHIR gateway"}))
    url = app.extensions.get("redis_url")
    if not url:
        log.info("queue dashboard not mounted: in-process mode has no Redis URL for it")
        return
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = url
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/rq")
