"""Run the gateway on its embedded defaults: `python -m service`.

With GATEWAY_EMBEDDED_STACK=1 (the default) it also starts a worker process and, when no sync upstream is
configured, a local FHIR server (sekmet-fhir) as the upstream; GATEWAY_EMBEDDED_STACK=0 runs the gateway alone.

With no credentials configured (no GATEWAY_API_KEYS, no GATEWAY_JWT_JWKS_FILE, no key created with
service.apikeys) a development API key with every scope is made for this process and printed once, so that the
README's tour works out of the box. It lives in this process's memory only (never in the key table or Redis,
which other gateways may share), is refused once real credentials appear, and development mode only listens on
loopback.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import sys

from flask import Flask
from werkzeug.serving import WSGIRequestHandler

from service import create_app, local_stack, logs
from service.auth import key_hash, real_credentials_configured


class DevelopmentModeRefused(SystemExit):
    """No credentials are configured and the gateway was asked to listen beyond loopback."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def development_key(app: Flask) -> str | None:
    """A fresh all-scopes key held in app.config as its hash only, or None when real credentials exist."""
    if real_credentials_configured(app.config, app.extensions["store"]):
        return None
    host = str(app.config["GATEWAY_HOST"])
    if not is_loopback(host):
        raise DevelopmentModeRefused(
            f"no credentials are configured and GATEWAY_HOST={host} is not a loopback address: set GATEWAY_API_KEYS, "
            "GATEWAY_JWT_JWKS_FILE or create a key with `python -m service.apikeys create`, or listen on 127.0.0.1")
    raw = "ogk_dev_" + secrets.token_urlsafe(32)
    app.config["DEVELOPMENT_KEY_SHA256"] = key_hash(raw)
    return raw


class _RequestHandler(WSGIRequestHandler):
    """The development server's handler without its "Werkzeug/x Python/y" Server header (http.server always
    sends one, whatever the response says)."""

    def version_string(self) -> str:
        return "oncology-gateway"


def main() -> None:
    logs.configure()
    # SIGTERM exits through atexit, which stops the worker and local FHIR server started below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    embedded = os.environ.get("GATEWAY_EMBEDDED_STACK", "1") != "0"
    app = create_app()
    key = development_key(app)  # before anything starts: a refused development mode starts nothing
    upstream = local_stack.start_local_upstream() if embedded else None
    host, port = app.config["GATEWAY_HOST"], app.config["GATEWAY_PORT"]
    log = logging.getLogger("gateway")
    if key:
        print(f"\n  development API key (all scopes, this process only, until real credentials exist): {key}\n"
              f"  export GATEWAY_KEY={key}\n", flush=True)
    if embedded and app.extensions["redis_url"]:
        local_stack.start_worker(app.extensions["redis_url"])
    log.info("gateway listening", extra={"url": f"http://{host}:{port}", "redis_mode": app.extensions["redis_mode"],
                                         "local_upstream": upstream})
    app.run(host=host, port=port, threaded=True, request_handler=_RequestHandler)


if __name__ == "__main__":
    main()
