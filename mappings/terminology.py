"""The terminology tables (mappings/terminology/*.csv) loaded once; a concept key gives its verified codings."""
from __future__ import annotations

import csv
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

TABLE_DIR = Path(__file__).parent / "terminology"
# The order codings appear in a CodeableConcept: the clinical terminology first, classifications after.
SYSTEM_ORDER = ("snomed", "loinc", "rxnorm", "icd10cm", "icdo3", "ncit", "hl7", "local")


@lru_cache(maxsize=1)
def _tables() -> dict[str, list[dict]]:
    concepts: dict[str, list[dict]] = {}
    for name in SYSTEM_ORDER:
        path = TABLE_DIR / f"{name}.csv"
        if not path.exists():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                coding = {"system": row["system"], "code": row["code"], "display": row["display"]}
                concepts.setdefault(row["key"], []).append(coding)
    return concepts


@lru_cache(maxsize=1)
def _units() -> dict[str, dict]:
    with (TABLE_DIR / "ucum.csv").open(newline="", encoding="utf-8") as handle:
        return {row["reported"]: {"code": row["code"], "display": row["display"]} for row in csv.DictReader(handle)}


def known(key: str) -> bool:
    return key in _tables()


def codings(key: str | None) -> list[dict]:
    """Every verified coding for a concept key (copies, safe to modify)."""
    if not key:
        return []
    return [dict(c) for c in _tables().get(key, [])]


def coding(key: str, system: str) -> dict | None:
    return next((c for c in codings(key) if c["system"] == system), None)


def concept(key: str | None, text: str | None = None) -> dict:
    """A CodeableConcept: the verified codings of the key, and the text as given (or the first display)."""
    result: dict = {}
    found = codings(key)
    if found:
        result["coding"] = found
    label = text or (found[0]["display"] if found else None)
    if label:
        result["text"] = label
    return result


def ucum(reported_unit: str) -> dict | None:
    """UCUM code for a unit as reported ('mEq/l' -> 'meq/L'); None when the table does not know it."""
    return _units().get(reported_unit)


@lru_cache(maxsize=2)
def time_unit_days(with_words: bool = False) -> dict[str, float]:
    """Days per UCUM time unit (terminology/ucum_time_units.csv), by code ('wk' -> 7.0); with_words also by the
    English words the table lists ('weeks' -> 7.0), for Duration.unit text written without a code."""
    days: dict[str, float] = {}
    with (TABLE_DIR / "ucum_time_units.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            value = float(Fraction(row["days"]))
            days[row["code"]] = value
            if with_words:
                days.update(dict.fromkeys(row["words"].split(), value))
    return days


@lru_cache(maxsize=None)
def case_values(table: str) -> dict[str, dict[str, str]]:
    """A table from case-format values to concept keys (terminology/case_<table>.csv): first column -> its row."""
    with (TABLE_DIR / f"case_{table}.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        first = (reader.fieldnames or [""])[0]
        return {row[first]: row for row in reader}
