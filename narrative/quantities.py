"""Numbers of a sentence: ages, values with units, doses and frequencies, particle sizes, liver segments, counts.

Each finder returns clean-text offsets relative to the sentence, so callers can turn them into evidence.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache

from mappings import terminology
from narrative.rules import DATA_DIR

WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10, "eleven": 11, "twelve": 12, "a": 1, "an": 1}
NUMBER = r"(?:\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
DURATION_UNITS = {"hour": "h", "hours": "h", "h": "h", "day": "d", "days": "d", "week": "wk", "weeks": "wk",
                  "month": "mo", "months": "mo", "year": "a", "years": "a"}
LAB_UNIT = r"(?:pmol/l|pmol/L|nmol/l|nmol/L|mmol/l|mmol/L|mEq/l|mEq/L|mEq/I|mg/24\s?h|mg/dl|mg/dL|ng/ml|ng/mL|U/l|U/L|U/I|µg/l|ug/l|%)"
AGE = re.compile(r"\b(\d{1,3})[- ]year[- ]old\b")
FEMALE = re.compile(r"\b(woman|female|girl|lady)\b", re.IGNORECASE)
MALE = re.compile(r"\b(man|male|boy|gentleman)\b", re.IGNORECASE)
VALUE = re.compile(rf"(\d+(?:\.\d+)?)\s*({LAB_UNIT})(?![\w/])")
DOSE = re.compile(r"(\d+(?:\.\d+)?)\s*(mg|mcg|µg|ug|g)(?:\s*(?:/\s*(\d+)\s*(h|d)\b|every\s+(\d+)\s*(hours?|days?|weeks?|months?)"
                  r"|\s+(daily|a day|per day)))?")
PARTICLES = re.compile(r"(\d+)\s*[–-]\s*(\d+)\s*[μµ]m")
SEGMENTS = re.compile(r"\bsegments?\s+((?:I{1,3}|IV[ab]?|V|VI{1,3}|VIII)(?:\s*(?:,|and|,\s*and)\s*(?:I{1,3}|IV[ab]?|V|VI{1,3}|VIII))*)\b")
SEGMENT = re.compile(r"IV[ab]?|VI{0,3}|I{1,3}")
COUNT_BEFORE = re.compile(rf"\b({NUMBER}|several|multiple|repeated)\s+(?:\w+\s+){{0,3}}$", re.IGNORECASE)


def number(word: str) -> float:
    word = word.lower()
    return float(WORD_NUMBERS[word]) if word in WORD_NUMBERS else float(word)


def integral(value: float) -> int | float:
    return int(value) if value == int(value) else value


@lru_cache(maxsize=1)
def unit_spellings() -> dict[str, str]:
    with (DATA_DIR / "units.csv").open(newline="", encoding="utf-8") as handle:
        return {row["reported"]: row["normalised"] for row in csv.DictReader(handle)}


@lru_cache(maxsize=1)
def _arbitrary_units() -> list[tuple[str, set[str]]]:
    with (DATA_DIR / "arbitrary_units.csv").open(newline="", encoding="utf-8") as handle:
        return [(row["analyte"].lower(), set(row["units"].split(";"))) for row in csv.DictReader(handle)]


def arbitrary_unit(analyte: str, unit: str) -> bool:
    """The assay reports this unit in its own arbitrary units (mappings/narrative/arbitrary_units.csv): chromogranin
    A's 'U/l' is no UCUM enzyme unit, so it stays text (unitCoded false) and gets no UCUM code."""
    words = analyte.lower()
    return any(marker in words and unit in units for marker, units in _arbitrary_units())


def ucum_code(unit: str) -> str | None:
    """The UCUM code of a reported unit from terminology/ucum.csv; None: not a unit the table knows (review it)."""
    found = terminology.ucum(unit)
    return found["code"] if found else None


def normal_unit(reported: str) -> str:
    reported = re.sub(r"\s+", " ", reported)
    return unit_spellings().get(reported, reported)


@dataclass(frozen=True)
class Found:
    start: int
    end: int
    value: dict


def values(text: str) -> list[Found]:
    return [Found(m.start(), m.end(), {"value": integral(float(m.group(1))), "unit": normal_unit(m.group(2)),
                                       "reported": m.group(2)})
            for m in VALUE.finditer(text)]


def doses(text: str) -> list[Found]:
    found = []
    for m in DOSE.finditer(text):
        unit = m.group(2)
        dosage: dict = {"dose": {"value": integral(float(m.group(1))), "unit": unit}}
        if m.group(3):
            dosage["frequency"] = {"count": 1, "every": {"value": int(m.group(3)), "unit": m.group(4)}}
        elif m.group(5):
            dosage["frequency"] = {"count": 1, "every": {"value": int(m.group(5)), "unit": DURATION_UNITS[m.group(6)]}}
        elif m.group(7):
            dosage = {"dailyDose": dosage["dose"]}
        dosage["text"] = m.group(0)
        found.append(Found(m.start(), m.end(), dosage))
    return found


def particles(text: str) -> list[Found]:
    return [Found(m.start(), m.end(), {"sizeMinUm": int(m.group(1)), "sizeMaxUm": int(m.group(2))})
            for m in PARTICLES.finditer(text)]


def segments(text: str) -> list[Found]:
    return [Found(m.start(1), m.end(1), {"segments": SEGMENT.findall(m.group(1))}) for m in SEGMENTS.finditer(text)]


def count_before(text: str, position: int) -> dict | None:
    """'Three transarterial … procedures', 'Several embolizations': the session count before a mention."""
    m = COUNT_BEFORE.search(text[:position])
    if not m:
        return None
    word = m.group(1).lower()
    if word in ("several", "multiple", "repeated"):
        return {"text": f"{word} (number not reported)"}
    return {"count": int(number(word))}
