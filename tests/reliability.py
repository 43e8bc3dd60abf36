"""Records each fault test's figures, so that docs/reliability.md is generated from the suite's results.

Rows go to test-artifacts/reliability.json; `python scripts/reliability_report.py` renders the table.
"""
from __future__ import annotations

import json
from pathlib import Path

ARTIFACT = Path(__file__).resolve().parent.parent / "test-artifacts" / "reliability.json"


def record(fault: str, injection: str, sent: str, arrived: str, recovery_s: float | None, test: str) -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    rows = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    rows[test] = {"fault": fault, "injection": injection, "sent": sent, "arrived": arrived,
                  "recovery_s": None if recovery_s is None else round(recovery_s, 2)}
    ARTIFACT.write_text(json.dumps(rows, indent=1, sort_keys=True))
