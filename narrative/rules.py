"""The data of `mappings/narrative/`: lexicon rows, ConText rules and section rules, loaded once."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "mappings" / "narrative"
LEXICON = DATA_DIR / "lexicon.csv"
CONTEXT_RULES = DATA_DIR / "context_rules.json"
SECTION_RULES = DATA_DIR / "sections.json"


@dataclass(frozen=True)
class LexiconEntry:
    row: int  # line number in lexicon.csv: the rule a fact cites
    category: str
    key: str | None
    literal: str
    attributes: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def rule_id(self) -> str:
        return f"lexicon.csv:{self.row}"


def _attributes(raw: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in raw.split(";") if "=" in item)
    return {name.strip(): value.strip() for name, value in pairs}


@lru_cache(maxsize=1)
def lexicon() -> tuple[LexiconEntry, ...]:
    with LEXICON.open(newline="", encoding="utf-8") as handle:
        return tuple(
            LexiconEntry(row=number, category=row["category"], key=row["key"] or None, literal=row["literal"],
                         attributes=_attributes(row["attributes"] or ""), source=row["source"])
            for number, row in enumerate(csv.DictReader(handle), start=2))


@lru_cache(maxsize=1)
def context_rules() -> tuple[dict, ...]:
    return tuple(json.loads(CONTEXT_RULES.read_text(encoding="utf-8"))["context_rules"])


@lru_cache(maxsize=1)
def section_rules() -> tuple[dict, ...]:
    return tuple(json.loads(SECTION_RULES.read_text(encoding="utf-8"))["section_rules"])
