"""The tables in mappings/terminology/ keep the format and the source rule of their README."""
from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import pytest

from mappings import terminology

TABLES = Path(terminology.__file__).parent / "terminology"
SCHEMA = json.loads((TABLES.parent / "case_schema_v1.json").read_text(encoding="utf-8"))


def _rows(name: str) -> list[dict]:
    with (TABLES / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("name", sorted(p.name for p in TABLES.glob("*.csv")))
def test_every_row_of_every_table_names_its_source(name):
    rows = _rows(name)
    assert rows and list(rows[0])[-1] == "source"
    assert [i for i, row in enumerate(rows, start=2) if not (row["source"] or "").strip()] == []


@pytest.mark.parametrize("name", sorted(p.name for p in TABLES.glob("case_*.csv")))
def test_case_value_tables_name_only_concepts_the_coding_tables_hold(name):
    rows = _rows(name)
    key_columns = [c for c in rows[0] if c == "key" or c.endswith("_key")]
    assert key_columns
    unknown = {row[c] for row in rows for c in key_columns if row[c] and not terminology.known(row[c])}
    assert unknown == set()


def test_case_value_tables_cover_the_values_the_case_schema_allows():
    segments = SCHEMA["$defs"]["site"]["properties"]["segments"]["items"]["enum"]
    assert set(terminology.case_values("liver_segments")) == set(segments)
    outcome_values = set(SCHEMA["$defs"]["outcome"]["properties"]["value"]["enum"])
    assert set(terminology.case_values("disease_status")) <= outcome_values


def test_time_units_keep_the_ucum_relations_between_them():
    """UCUM: min = 60 s, h = 60 min, d = 24 h, wk = 7 d, a = 365.25 d (mean Julian year), mo = a/12."""
    days = {row["code"]: Fraction(row["days"]) for row in _rows("ucum_time_units.csv")}
    assert days["d"] == 1
    assert (days["min"], days["h"], days["wk"], days["a"]) == (60 * days["s"], 60 * days["min"], 7 * days["d"], Fraction("365.25"))
    assert days["mo"] == days["a"] / 12 and days["h"] * 24 == days["d"]


def test_unit_words_mean_the_unit_of_their_row():
    by_code, by_word = terminology.time_unit_days(), terminology.time_unit_days(with_words=True)
    assert by_word["weeks"] == by_code["wk"] == 7.0 and by_word["month"] == by_code["mo"]
    assert set(by_code) <= set(by_word)
