"""Run the gateway on its embedded defaults: `python -m service`.

With GATEWAY_EMBEDDED_STACK=1 (the default) it also starts a worker process and, when no sync upstream is
configured, a local FHIR server (sekmet-fhir) as the upstream; GATEWAY_EMBEDDED_STACK=0 runs the gateway alone.

With no credentials configured (no GATEWAY_API_KEYS, no GATEWAY_JWT_JWKS_FILE) a development API key with
every scope is created for this run and printed once, so that the README's tour works out of the box.
"""
from __future__ import annotations

import logging
import os
import signal
import sys

from service import create_app, local_stack, logs


def _development_key(app) -> str | None:
    if app.config.get("API_KEYS") or app.config.get("JWT_JWKS_FILE"):
        return None
    from service.apikeys import create_key, revoke_client

    revoke_client(app.extensions["redis"], "local-development")  # one live development key at a time
    return create_key(app.extensions["redis"], "local-development", ["system/*.read", "system/*.write", "admin"])


def main() -> None:
    logs.configure()
    # SIGTERM exits through atexit, which stops the worker and local FHIR server started below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    embedded = os.environ.get("GATEWAY_EMBEDDED_STACK", "1") != "0"
    upstream = local_stack.start_local_upstream() if embedded else None
    app = create_app()
    host, port = app.config["GATEWAY_HOST"], app.config["GATEWAY_PORT"]
    log = logging.getLogger("gateway")
    key = _development_key(app)
    if key:
        print(f"\n  development API key (all scopes, this Redis only): {key}\n  export GATEWAY_KEY={key}\n", flush=True)
    if embedded and app.extensions["redis_url"]:
        local_stack.start_worker(app.extensions["redis_url"])
    log.info("gateway listening", extra={"url": f"http://{host}:{port}", "redis_mode": app.extensions["redis_mode"],
                                         "local_upstream": upstream})
    app.run(host=host, port=port, threaded=True)


if __name__ == "__main__":
    main()
