"""The versioned rule pack (mappings/rules/treatment-lines-v1.json): loaded once, looked up by code."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

RULE_PACK_PATH = Path(__file__).resolve().parent.parent / "mappings" / "rules" / "treatment-lines-v1.json"


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_rules(path: Path | str = RULE_PACK_PATH) -> dict:
    """The rule pack as a dict; cached, so callers must not modify it."""
    return _load(str(path))


class RuleBook:
    """Lookups over one rule pack; built per summary so that a caller's own pack is honoured."""

    def __init__(self, pack: dict):
        self.pack = pack
        self.version: str = pack["version"]
        systems = pack["systems"]
        self.systems = systems
        self.regimen_days: float = pack["windows"]["regimenDays"]
        self.gap_days: float = pack["windows"]["gapDays"]
        self.classes: dict[str, dict] = pack["classes"]
        self._codes = {(systems[e["system"]], e["code"]): e["class"] for e in pack["agents"] + pack["procedures"]}
        self._keywords = [tuple(k) for k in pack["textFallback"]["keywords"]]
        conditions = pack["conditions"]
        self.tumour_codes = set(conditions["tumour"])
        self.syndrome_codes = set(conditions["syndrome"])
        self.critical_codes = set(conditions["criticalEvent"])
        self.critical_keywords = tuple(conditions["criticalEventKeywords"])
        self.status_reasons: dict[str, str] = pack["statusReasons"]
        self.disease_status = pack["diseaseStatus"]
        self.outcomes = pack["outcomes"]
        self.end_priority: list[str] = pack["endReasonPriority"]

    def classify(self, concept: dict | None) -> tuple[str | None, str]:
        """(class, how): by code; by text keywords only when the concept carries no coding at all."""
        concept = concept or {}
        codings = concept.get("coding") or []
        for coding in codings:
            found = self._codes.get((coding.get("system"), coding.get("code")))
            if found:
                return found, "code"
        if codings:
            return None, "unrecognised-code"
        text = (concept.get("text") or "").lower()
        for keyword, cls in self._keywords:
            if keyword in text:
                return cls, "text"
        return None, "no-code"

    def role(self, cls: str | None) -> str | None:
        return self.classes.get(cls, {}).get("role") if cls else None

    def modality(self, cls: str) -> str:
        return self.classes[cls]["modality"]

    def is_local(self, cls: str) -> bool:
        return bool(self.classes.get(cls, {}).get("local"))

    def is_ssa(self, cls: str) -> bool:
        return bool(self.classes.get(cls, {}).get("ssa"))

    def explain(self, rule_id: str) -> str:
        return self.pack["rules"][rule_id].format(regimenDays=self.regimen_days, gapDays=self.gap_days)
