"""`python -m localfhir ensure-venv|start|status|reset|stop` (see localfhir.server)."""
import sys

from localfhir.server import main

sys.exit(main())
