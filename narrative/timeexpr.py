"""Relative time expressions, kept relative: '9 months later', '2 and 5 years later, respectively',
'after 4 days', '11 months after SIRT', 'for the following 2 years', '1 year of stable disease'.

Each expression says what kind of time it is; which event it is anchored to is decided by the assembler."""
from __future__ import annotations

import re
from dataclasses import dataclass

from narrative.quantities import DURATION_UNITS, NUMBER, integral, number

UNIT = r"(hours?|days?|weeks?|months?|years?)"
_PATTERNS = (
    ("respectively", re.compile(rf"\b({NUMBER}) and ({NUMBER}) {UNIT} later,? respectively", re.IGNORECASE)),
    ("after-named", re.compile(rf"\b({NUMBER}) {UNIT} after ([A-Z][\w-]*)", re.IGNORECASE)),
    ("later", re.compile(rf"\b({NUMBER}) {UNIT} later\b", re.IGNORECASE)),
    ("after", re.compile(rf"\bafter ({NUMBER}) {UNIT}\b", re.IGNORECASE)),
    ("duration", re.compile(rf"\bfor (?:the following |the next )?({NUMBER}) {UNIT}\b", re.IGNORECASE)),
    ("duration", re.compile(rf"\b({NUMBER}) {UNIT}(?= of\b)", re.IGNORECASE)),
)


@dataclass(frozen=True)
class TimeExpression:
    start: int  # offsets in the sentence text
    end: int
    kind: str  # after | duration | respectively | after-named
    offsets: tuple[dict, ...]
    anchor_word: str | None = None
    text: str = ""


def _duration(value: str, unit: str) -> dict:
    return {"value": integral(number(value)), "unit": DURATION_UNITS[unit.lower()]}


def find(text: str) -> list[TimeExpression]:
    found: list[TimeExpression] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if any(f.start <= m.start() < f.end or m.start() <= f.start < m.end() for f in found):
                continue
            groups = m.groups()
            if kind == "respectively":
                offsets = (_duration(groups[0], groups[2]), _duration(groups[1], groups[2]))
                expression = TimeExpression(m.start(), m.end(), kind, offsets, text=m.group(0))
            elif kind == "after-named":
                expression = TimeExpression(m.start(), m.end(), kind, (_duration(groups[0], groups[1]),),
                                            anchor_word=groups[2], text=m.group(0))
            else:
                expression = TimeExpression(m.start(), m.end(), "after" if kind == "later" else kind,
                                            (_duration(groups[0], groups[1]),), text=m.group(0))
            found.append(expression)
    return sorted(found, key=lambda f: f.start)
