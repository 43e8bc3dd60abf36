"""Run the gateway on its embedded defaults: `python -m service`."""
from __future__ import annotations

import logging

from service import create_app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app()
    host, port = app.config["GATEWAY_HOST"], app.config["GATEWAY_PORT"]
    logging.getLogger("gateway").info("gateway on http://%s:%s (redis mode: %s)", host, port, app.extensions["redis_mode"])
    app.run(host=host, port=port, threaded=True)


if __name__ == "__main__":
    main()
