"""Run the gateway on its embedded defaults: `python -m service`.

With no credentials configured (no GATEWAY_API_KEYS, no GATEWAY_JWT_JWKS_FILE) a development API key with
every scope is created for this run and printed once, so that the README's tour works out of the box.
"""
from __future__ import annotations

import logging

from service import create_app, logs


def _development_key(app) -> str | None:
    if app.config.get("API_KEYS") or app.config.get("JWT_JWKS_FILE"):
        return None
    from service.apikeys import create_key, revoke_client

    revoke_client(app.extensions["redis"], "local-development")  # one live development key at a time
    return create_key(app.extensions["redis"], "local-development", ["system/*.read", "system/*.write", "admin"])


def main() -> None:
    logs.configure()
    app = create_app()
    host, port = app.config["GATEWAY_HOST"], app.config["GATEWAY_PORT"]
    log = logging.getLogger("gateway")
    key = _development_key(app)
    if key:
        print(f"\n  development API key (all scopes, this Redis only): {key}\n  export GATEWAY_KEY={key}\n", flush=True)
    log.info("gateway listening", extra={"url": f"http://{host}:{port}", "redis_mode": app.extensions["redis_mode"]})
    app.run(host=host, port=port, threaded=True)


if __name__ == "__main__":
    main()
