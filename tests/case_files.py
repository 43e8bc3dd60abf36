"""The seed cases under tests/data: their names and their case documents."""
from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).parent / "data"
SEED_CASES = ["case1-vipoma", "case2-insulinoma"]


def load_case(name: str) -> dict:
    return json.loads((DATA / name / "input.json").read_text(encoding="utf-8"))
