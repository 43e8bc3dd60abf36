"""Command line of the local FHIR server (localfhir.server), runnable from a checkout by any python3 without the
project installed: `python3 scripts/fhir_server.py ensure-venv|start|status|reset|stop`.

The launcher itself is the importable module localfhir/server.py (stdlib only), so an installed wheel ships it."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localfhir.server import main  # noqa: E402  (after the path that makes the checkout importable)

if __name__ == "__main__":
    sys.exit(main())
