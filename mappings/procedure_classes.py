"""The one procedure classification table (mappings/procedure_categories.csv), read by every part that classifies
a procedure code: the registry category (registry/procedure_history.py), the treatment-line class (the rule pack
reader, treatment_lines/rules.py) and the mCODE cancer-related surgical profile (mappings/to_procedure.py).

Columns: system, code, display; `category` the registry's normalised category (empty: the registry has none for
it, e.g. radiotherapy); `line_class` a class of the rule pack's `classes`; `surgical_profile` yes when a performed
procedure with this code is a cancer-related surgical procedure; `fhir_category` the terminology key of the
Procedure.category the mapping gives it (category-radiotherapy: SIRT and radionuclide therapy are radiation therapy
whatever liver-directed or systemic reading the treatment lines give them; mCODE records radiotherapy with SCT
108290001); `source` where the code was verified.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "procedure_categories.csv"


@dataclass(frozen=True)
class ProcedureClass:
    system: str
    code: str
    display: str
    category: str | None
    line_class: str | None
    surgical: bool
    fhir_category: str | None


@lru_cache(maxsize=1)
def procedure_classes() -> dict[tuple[str, str], ProcedureClass]:
    """(system, code) -> its row."""
    with TABLE.open(newline="", encoding="utf-8") as handle:
        return {(r["system"], r["code"]): ProcedureClass(r["system"], r["code"], r["display"], r["category"] or None,
                                                         r["line_class"] or None, r["surgical_profile"] == "yes",
                                                         r["fhir_category"] or None)
                for r in csv.DictReader(handle)}


def classify(codings: list[dict]) -> ProcedureClass | None:
    """The row of the first coding the table knows."""
    table = procedure_classes()
    return next((table[k] for k in ((c.get("system"), c.get("code")) for c in codings) if k in table), None)
