"""The Flask gateway: create_app() wires configuration, Redis and one blueprint per area."""
from __future__ import annotations

import gc
import logging
from types import FunctionType

import redis
from flask import Flask
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from mappings.errors import InputError, FhirValidationError, Issue
from service import config as config_module
from service.outcome import error, outcome_response
from store import db, version_mirror
from store.db import DatabaseUnavailable
from summaries.line_summary import SummaryBusy, SummaryTooLarge


class Gateway(Flask):
    """Flask, remembering which hooks and views are plain functions: Flask asks inspect whether each one is a
    coroutine function on every request (the hooks and the view: a few microseconds per request)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: set[object] = set()

    def ensure_sync(self, func):
        if func in self._sync_functions:
            return func
        found = super().ensure_sync(func)
        if found is func and isinstance(func, FunctionType) and len(self._sync_functions) < 10_000:
            self._sync_functions.add(func)  # plain functions only: a bound method is a new object each time
        return found


def create_app(config: dict | None = None) -> Flask:
    app = Gateway(__name__)
    app.config.from_mapping(config_module.from_environment())
    if config:
        app.config.from_mapping(config)
    _connect_redis(app)
    _connect_database(app)
    _install_request_pipeline(app)
    _register_blueprints(app)
    _register_errors(app)
    _freeze_startup_heap()
    return app


_startup_heap_frozen = False


def _freeze_startup_heap() -> None:
    """Once per process, when its first app is built: the objects of startup (modules, routes, mappings tables,
    ~135,000 of them) leave the garbage collector's care for the process's life. Every full collection walked them
    again: with fhir.resources' models loaded too, ~70 ms once every ~60 Synthea-sized transactions, ~14 us per
    ingested resource landing on whichever request was running (bench/ingest.py). gc.freeze() is what CPython
    offers for this (it also keeps gunicorn's forked workers from copying those pages when the collector touches
    them); the collect before it leaves no garbage frozen. Objects made later are collected as before."""
    global _startup_heap_frozen
    if _startup_heap_frozen:
        return
    _startup_heap_frozen = True
    gc.collect()
    gc.freeze()


def _register_blueprints(app: Flask) -> None:
    # Imported here: the blueprints read app.extensions at request time, after create_app has filled them.
    from service.audit import bp as audit_bp
    from service.bulk_api import bp as bulk_bp
    from service.bundles import bp as bundles_bp
    from service.cases import bp as cases_bp
    from service.extract import bp as extract_bp
    from service.lines import bp as lines_bp, enqueue_after_write
    from service.meta import bp as meta_bp
    from service.metrics import bp as metrics_bp
    from service.patients import bp as patients_bp
    from service.resources import bp as resources_bp
    from service.sync_api import bp as sync_bp
    from service.timeline_page import bp as timeline_bp

    # The generic /<type>/<id> routes of `resources` go last so that every specific route is listed first.
    for blueprint in (meta_bp, cases_bp, extract_bp, bulk_bp, bundles_bp, patients_bp, lines_bp, timeline_bp, sync_bp, audit_bp, metrics_bp,
                      resources_bp):
        app.register_blueprint(blueprint)
    enqueue_after_write(app)


def _install_request_pipeline(app: Flask) -> None:
    """Before the handler: request id and clock, authentication and scopes (service/logs.py, auth.py); the rate
    limit (rate_limit.py); the bounds of the request line and the queue dashboard's guard (request_limits.py,
    operator_ui.py). After it: the audit trail (audit.py), then the security headers, metrics and log line
    (headers.py, metrics.py, logs.py). Each module keeps its step; all the steps before the handler share one hook
    and all those after it another, because Flask pays per hook (an inspection of the function, context lookups)
    and the steps of a hook share the request, g and route, taken from the context variables once (each use of
    the `request`, `g` or `current_app` proxies costs a lookup): a cached read spends less on these hooks than on
    its own work (bench/gateway.py, benchmark 2)."""
    import time

    from flask import Response
    from flask.globals import _cv_app, _cv_request

    from service import audit, auth, headers, logs, metrics, operator_ui, rate_limit, request_limits

    auth.check_configuration(app.config)
    dashboard = operator_ui.install(app)
    count_request = rate_limit.install(app)

    @app.before_request
    def admit() -> Response | None:
        request, g = _cv_request.get().request, _cv_app.get().g
        logs.start(request, g)
        refused = auth.check_access(app, request, g)
        if refused is not None:
            return refused
        count_request(request, g)  # needs g.principal; a client over its limit gets 429 (TooManyRequests) here
        refused = request_limits.check(app, request)
        if refused is None and dashboard:
            refused = operator_ui.guard_actions(request)
        return refused

    @app.after_request
    def answer(response: Response) -> Response:
        request, g = _cv_request.get().request, _cv_app.get().g
        # The audit event first: metrics and the log line time the request with it.
        audit.record(app, request, g, response)
        headers.secure(request, response)
        rule = request.url_rule
        route = rule.rule if rule is not None else "(unmatched)"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe(request.method, route, response.status_code, elapsed)
        logs.finish(request, g, response, route, elapsed)
        return response


def _connect_redis(app: Flask) -> None:
    from service.redis_conn import connect

    if "redis" in app.extensions:
        return
    client, mode, url = connect(app.config.get("REDIS_URL"))
    app.extensions["redis"] = client
    app.extensions["redis_mode"] = mode
    app.extensions["redis_url"] = url


def _connect_database(app: Flask) -> None:
    if "store" in app.extensions:
        return
    if app.config["REFERENCE_POLICY"] not in ("strict", "lenient"):
        raise ValueError(f"GATEWAY_REFERENCE_POLICY must be strict or lenient, not {app.config['REFERENCE_POLICY']!r}")
    url = app.config.get("DATABASE_URL") or db.default_url()
    app.extensions["store"] = db.engine_for(url)
    app.extensions["database_url"] = url
    # Cached reads take the patient's version from Redis when store/version_mirror.py allows it; this process's
    # writes then mark and fence it. In-process mode (fakeredis) has no other process to share it with.
    in_process = app.extensions.get("redis_mode") == "in-process"
    version_mirror.attach(app.extensions["store"], None if in_process else app.extensions.get("redis"),
                          float(app.config.get("VERSION_MIRROR_SECONDS", version_mirror.lease_from_env(app.extensions["store"]))))


def _register_errors(app: Flask) -> None:
    @app.errorhandler(InputError)
    def input_error(exc: InputError):
        return outcome_response(exc.issues, exc.status)

    @app.errorhandler(FhirValidationError)
    def fhir_error(exc: FhirValidationError):
        return outcome_response(exc.issues, 422)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = {404: "not-found", 405: "not-supported", 413: "too-long", 415: "not-supported", 429: "throttled"}.get(exc.code or 500, "processing")
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"the request body is larger than the limit of {app.config['MAX_CONTENT_LENGTH']} bytes"
        response = error(exc.code or 500, message, code)
        if exc.code == 429:
            response.headers["Retry-After"] = str(getattr(exc, "retry_after", None) or 60)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # http.html: 405 names what is allowed
        return response

    @app.errorhandler(SummaryBusy)
    def summary_busy(exc: Exception):
        response = outcome_response([Issue("$", "this patient's summary is being computed; retry shortly", "transient")], 503)
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(SummaryTooLarge)
    def summary_too_large(exc: SummaryTooLarge):
        return outcome_response([Issue("$", str(exc), "too-costly")], 422)

    @app.errorhandler(DatabaseUnavailable)
    def database_down(exc: Exception):
        logging.getLogger("gateway").error("database unavailable", extra={"error": type(exc).__name__})
        response = outcome_response([Issue("$", "the database is unavailable and did not confirm the request; retry it", "transient")], 503)
        response.headers["Retry-After"] = "2"
        return response

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def store_down(exc: Exception):
        # Nothing was acknowledged: the client may retry; the connection pool reconnects by itself.
        logging.getLogger("gateway").error("redis unavailable", extra={"error": type(exc).__name__})
        response = outcome_response([Issue("$", "the store is unavailable and did not confirm the request; retry it (conditional writes are safe to repeat)", "transient")], 503)
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if db.is_unavailable(exc):  # an outage met outside store.db.write/reading (e.g. mid-stream): still a 503
            return database_down(exc)
        logging.getLogger("gateway").exception("unhandled error")
        return outcome_response([Issue("$", "internal error; the request was not applied", "exception", "fatal")], 500)
