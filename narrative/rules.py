"""The data of `mappings/narrative/`: lexicon rows, ConText rules and section rules, loaded once."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "mappings" / "narrative"
LEXICON = DATA_DIR / "lexicon.csv"
# The drug lexicon of the treatment-line engine (mappings/drugs/, issue 13): its names and brands are targets
# too, after our own rows (a phrase our lexicon already files elsewhere, e.g. "insulin" as a stain, stays ours).
DRUG_AGENTS = DATA_DIR.parent / "drugs" / "agents.csv"
DRUG_CLASS_ATTRIBUTES = {"somatostatin-analogue": {"class": "ssa"}, "supportive": {"intent": "supportive"}}
CONTEXT_RULES = DATA_DIR / "context_rules.json"
SECTION_RULES = DATA_DIR / "sections.json"


@dataclass(frozen=True)
class LexiconEntry:
    row: int  # line number in its table: the rule a fact cites
    category: str
    key: str | None
    literal: str
    attributes: dict[str, str] = field(default_factory=dict)
    source: str = ""
    table: str = "lexicon.csv"

    @property
    def rule_id(self) -> str:
        return f"{self.table}:{self.row}"


def _attributes(raw: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in raw.split(";") if "=" in item)
    return {name.strip(): value.strip() for name, value in pairs}


@lru_cache(maxsize=1)
def lexicon() -> tuple[LexiconEntry, ...]:
    with LEXICON.open(newline="", encoding="utf-8") as handle:
        own = tuple(
            LexiconEntry(row=number, category=row["category"], key=row["key"] or None, literal=row["literal"],
                         attributes=_attributes(row["attributes"] or ""), source=row["source"])
            for number, row in enumerate(csv.DictReader(handle), start=2))
    taken = {entry.literal.lower() for entry in own}
    return own + tuple(entry for entry in _drug_entries() if entry.literal.lower() not in taken)


def _drug_entries() -> list[LexiconEntry]:
    from mappings import terminology

    if not DRUG_AGENTS.exists():
        return []
    entries, seen = [], set()
    with DRUG_AGENTS.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            key = row["agent"] if terminology.known(row["agent"]) else None  # a key only where our tables code it
            for name in filter(None, (n.strip() for n in f"{row['names']};{row['brands']}".split(";"))):
                if name.lower() in seen:
                    continue
                seen.add(name.lower())
                entries.append(LexiconEntry(row=number, category="medication", key=key, literal=name,
                                            attributes=dict(DRUG_CLASS_ATTRIBUTES.get(row["class"], {})),
                                            source=row["source"], table="drugs/agents.csv"))
    return entries


@lru_cache(maxsize=1)
def context_rules() -> tuple[dict, ...]:
    return tuple(json.loads(CONTEXT_RULES.read_text(encoding="utf-8"))["context_rules"])


@lru_cache(maxsize=1)
def section_rules() -> tuple[dict, ...]:
    return tuple(json.loads(SECTION_RULES.read_text(encoding="utf-8"))["section_rules"])
