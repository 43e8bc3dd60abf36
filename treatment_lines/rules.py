"""The versioned rule pack (mappings/rules/treatment-lines-v2.json): loaded once, looked up by code."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mappings.procedure_classes import procedure_classes
from treatment_lines.lexicon import Lexicon, load_lexicon

RULE_PACK_PATH = Path(__file__).resolve().parent.parent / "mappings" / "rules" / "treatment-lines-v2.json"
ROLE_PRIORITY = ("therapy", "supportive", "surgery", "critical-event")


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_rules(path: Path | str = RULE_PACK_PATH) -> dict:
    """The rule pack as a dict; cached, so callers must not modify it."""
    return _load(str(path))


@dataclass(frozen=True)
class LineRules:
    """One indication's line rules (the default table with the indication's entries on top)."""

    indication: str
    regimen_days: float
    gap_days: float
    substitute: dict[str, str]          # agent -> its substitution group
    gap_exempt: frozenset[str]
    additions: frozenset[str]
    palliative_sites: tuple[str, ...]
    switch_agents: frozenset[str] = frozenset()   # switch maintenance: agents that do not advance the line ...
    switch_after: frozenset[str] = frozenset()    # ... when started after an induction with one of these

    def same_agent(self, a: str, b: str) -> bool:
        return self.substitute.get(a, a) == self.substitute.get(b, b)


def line_rules(pack: dict, indication: str | None) -> LineRules:
    table = dict(pack["lineRules"]["default"])
    if indication:
        table |= {k: v for k, v in pack["lineRules"]["indications"][indication].items() if k not in ("conditions", "note")}
    groups = {agent: "|".join(group) for group in table["substitutions"] for agent in group}
    switch = table.get("switchMaintenance") or {}
    return LineRules(indication or "default", table["regimenDays"], table["gapDays"], groups,
                     frozenset(table["gapExempt"]), frozenset(table["additionsWithinLine"]),
                     tuple(table["palliativeRadiotherapySites"]),
                     frozenset(switch.get("agents", [])), frozenset(switch.get("afterInduction", [])))


@dataclass(frozen=True)
class Classified:
    cls: str | None
    how: str                      # ingredient-code | product-code | code | text | unrecognised-code | no-code
    agents: tuple[str, ...] = ()
    action_days: float | None = None  # a long-acting depot: how long one dose acts (mappings/drugs/depots.csv)


class RuleBook:
    """Lookups over one rule pack; built per summary so that a caller's own pack is honoured."""

    def __init__(self, pack: dict, lexicon: Lexicon | None = None):
        self.pack = pack
        self.version: str = pack["version"]
        systems = pack["systems"]
        self.systems = systems
        self.lexicon = lexicon or load_lexicon()
        self.lines = line_rules(pack, None)
        self.regimen_days, self.gap_days = self.lines.regimen_days, self.lines.gap_days
        self.classes: dict[str, dict] = pack["classes"]
        # Procedure codes come from the one classification table the registry and the mapper read too.
        self._codes = {key: row.line_class for key, row in procedure_classes().items() if row.line_class}
        self._keywords = [tuple(k) for k in pack["textFallback"]["keywords"]]
        conditions = pack["conditions"]
        self.tumour_codes = set(conditions["tumour"])
        self.tumour_prefixes = tuple(conditions.get("tumourIcd10Prefixes", []))
        self.syndrome_codes = set(conditions["syndrome"])
        self.critical_codes = set(conditions["criticalEvent"])
        self.critical_keywords = tuple(conditions["criticalEventKeywords"])
        self.status_reasons: dict[str, str] = pack["statusReasons"]
        self.disease_status = pack["diseaseStatus"]
        self.outcomes = pack["outcomes"]
        self.end_priority: list[str] = pack["endReasonPriority"]
        self._memo: dict[tuple[str, bool], Classified] = {}  # a history repeats the same few concepts

    def use_indication(self, indication: str | None) -> None:
        self.lines = line_rules(self.pack, indication)
        self.regimen_days, self.gap_days = self.lines.regimen_days, self.lines.gap_days

    def _keyword(self, concept: dict) -> str | None:
        texts = [concept.get("text")] + [c.get("display") for c in concept.get("coding") or []]
        for text in (t.lower() for t in texts if t):
            for keyword, cls in self._keywords:
                if keyword in text:
                    return cls
        return None

    def classify(self, concept: dict | None, medication: bool = False) -> Classified:
        """By code; then (medications) by the lexicon's names; keywords only when nothing names the concept."""
        memo_key = (repr(concept), medication)  # a cache key only: another key order is a miss, not an error
        found = self._memo.get(memo_key)
        if found is None:
            found = self._memo[memo_key] = self._classify(concept or {}, medication)
        return found

    def _classify(self, concept: dict, medication: bool) -> Classified:
        codings = concept.get("coding") or []
        if medication:
            found = self.lexicon.recognise(concept)
            if found:
                classes = sorted({self.lexicon.cls(a) for a in found.agents},
                                 key=lambda c: (ROLE_PRIORITY.index(self.role(c) or "critical-event"), c))
                return Classified(classes[0], found.how, found.agents, self.lexicon.action_days(concept, found.agents))
        for coding in codings:
            cls = self._codes.get((coding.get("system"), coding.get("code")))
            if cls:
                return Classified(cls, "code")
        cls = self._keyword(concept)
        if cls:
            return Classified(cls, "text")
        return Classified(None, "unrecognised-code" if codings else "no-code")

    def indication(self, codings: list[dict], text: str | None) -> str | None:
        """The indication table a cancer Condition selects (ICD-10-CM prefix, SNOMED code, or its words)."""
        icd, sct = self.systems.get("icd10cm", "http://hl7.org/fhir/sid/icd-10-cm"), self.systems["snomed"]
        for name, table in self.pack["lineRules"]["indications"].items():
            match = table["conditions"]
            for coding in codings:
                code = (coding.get("code") or "").upper()
                if coding.get("system") == icd and any(code.startswith(p) for p in match.get("icd10cm", [])):
                    return name
                if coding.get("system") == sct and code in match.get("snomed", []):
                    return name
        words = " ".join([text or ""] + [c.get("display") or "" for c in codings]).lower()
        for name, table in self.pack["lineRules"]["indications"].items():
            if any(w in words for w in table["conditions"].get("text", [])):
                return name
        return None

    def role(self, cls: str | None) -> str | None:
        return self.classes.get(cls, {}).get("role") if cls else None

    def modality(self, cls: str) -> str:
        return self.classes[cls]["modality"]

    def is_local(self, cls: str) -> bool:
        return bool(self.classes.get(cls, {}).get("local"))

    def backbone(self, cls: str) -> str | None:
        """'SSA' or 'ADT' for the classes that run as a backbone under later lines; None otherwise."""
        return self.classes.get(cls, {}).get("backbone")

    def is_ssa(self, cls: str) -> bool:
        return self.backbone(cls) is not None

    def explain(self, rule_id: str) -> str:
        return self.pack["rules"][rule_id].format(regimenDays=self.regimen_days, gapDays=self.gap_days)
