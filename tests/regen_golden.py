"""Rewrite the golden Bundles and line summaries of the seed cases after a reviewed change: python tests/regen_golden.py"""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mappings.case_bundle import case_to_bundle  # noqa: E402
from treatment_lines.engine import summarise  # noqa: E402

GOLDEN_RECORDED = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
DATA = Path(__file__).parent / "data"


def golden_bundle(case: dict) -> dict:
    return case_to_bundle(case, recorded=GOLDEN_RECORDED)


if __name__ == "__main__":
    for folder in sorted(p for p in DATA.iterdir() if (p / "input.json").exists()):
        bundle = golden_bundle(json.loads((folder / "input.json").read_text(encoding="utf-8")))
        (folder / "expected-bundle.json").write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        # The line goldens are read from the golden Bundle, as tests/test_treatment_lines_golden.py reads them.
        lines = summarise([entry["resource"] for entry in bundle["entry"]])
        (folder / "expected-lines.json").write_text(json.dumps(lines, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(folder.name, len(bundle["entry"]), "entries")
