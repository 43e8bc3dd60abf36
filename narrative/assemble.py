"""From the mentions of one patient's section to a draft case document (case format v1) and its evidence.

The narrative is read in order. Each sentence's time expression anchors the facts it introduces to the
event before it (or to the event it names: "11 months after SIRT"), so no date is ever invented. A mention
that repeats a known procedure or regimen adds to that fact instead of creating another one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from narrative import timeexpr
from narrative.mentions import Mention, Sentence, evidence
from narrative.rules import lexicon
from narrative.textmap import CleanText

IHC_CUE = re.compile(r"immunohistochemi|inmunohistochemi|immunostain|staining", re.IGNORECASE)
NEW_CUE = re.compile(r"\b(a new|another|second|again)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
START_CUE = re.compile(r"\b(resumed|restarted|re-started)\b", re.IGNORECASE)
STOP_CUE = re.compile(r"\b(stop|stopped|discontinued|interrupted|withdrawn)\b", re.IGNORECASE)
INCREASE_CUE = re.compile(r"\b(increased|decreased|reduced|raised)\b", re.IGNORECASE)
ROUTES = {"subcutaneous": "subcutaneous", "intravenous": "intravenous", "intramuscular": "intramuscular"}
CONDITION_ROLES = {"primary-tumour": "primary-tumour", "metastasis": "metastasis", "symptom": "symptom",
                   "syndrome": "syndrome", "complication": "complication", "critical-event": "critical-event"}
SECTIONS = ("conditions", "observations", "procedures", "medications", "outcomes")


@dataclass
class Draft:
    case: dict
    evidence: list[dict] = field(default_factory=list)
    mentions: list[dict] = field(default_factory=list)


class Assembler:
    def __init__(self, clean: CleanText, case_id: str, label: str) -> None:
        self.clean = clean
        self.case: dict = {"formatVersion": "1", "caseId": case_id, "patient": {"sex": "unknown"}}
        self.label = label
        self.facts: dict[str, dict] = {}
        self.kinds: dict[str, str] = {}  # fact id -> section name
        self.evidence: list[dict] = []
        self.mentions: list[dict] = []
        self.last_event: str | None = None
        self.sentence_new: set[str] = set()
        self.sentence_refs: set[str] = set()
        self.mention_fact: dict[int, str] = {}
        self.sentence_mentions: list[Mention] = []

    # ---- bookkeeping -------------------------------------------------------------------------------------
    def _id(self, base: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:40] or "fact"
        candidate, n = base, 2
        while candidate in self.facts or candidate in ("presentation", "birth", "death"):
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def add(self, section: str, base: str, fact: dict, mention: Mention | None, event: bool = True) -> dict:
        fact_id = self._id(base)
        fact = {"id": fact_id, **fact}
        if isinstance(fact.get("text"), str):
            fact["text"] = " ".join(fact["text"].split())  # a line break of the source is no part of the name
        for agent in fact.get("agents", []):
            agent["text"] = " ".join(agent["text"].split())
        self.case.setdefault(section, []).append(fact)
        self.facts[fact_id], self.kinds[fact_id] = fact, section
        self.sentence_new.add(fact_id)
        if mention is not None:
            self.cite(fact_id, mention)
        if event:
            self.last_event = fact_id
        return fact

    def cite(self, fact_id: str, mention: Mention, role: str = "mention") -> None:
        record: dict = {"fact": fact_id, "role": role, "type": mention.category, "key": mention.key,
                  "start": mention.start, "end": mention.end, "text": mention.text, "rule": mention.rule,
                  "assertion": mention.assertion}
        if mention.cue:
            record["cue"] = mention.cue
        self.evidence.append(record)

    def cite_span(self, fact_id: str, sentence: Sentence, start: int, end: int, role: str, rule: str,
                  **extra: object) -> None:
        record = evidence(self.clean, sentence.start + start, sentence.start + end, rule)
        self.evidence.append({"fact": fact_id, "role": role, **record, **extra})

    def listed(self, mention: Mention, fact_id: str | None) -> None:
        if fact_id:
            self.mention_fact[id(mention)] = fact_id
        self.mentions.append({**self.mention_record(mention), "fact": fact_id})

    @staticmethod
    def mention_record(mention: Mention) -> dict:
        record: dict = {"type": mention.category, "key": mention.key, "start": mention.start, "end": mention.end,
                  "text": mention.text, "rule": mention.rule, "assertion": mention.assertion}
        if mention.cue:
            record["cue"] = mention.cue
        return record

    def latest(self, section: str, test=lambda fact: True) -> dict | None:
        return next((fact for fact in reversed(self.case.get(section, [])) if test(fact)), None)

    # ---- times -------------------------------------------------------------------------------------------
    def anchor_time(self, anchor: str | None, offset: dict | None = None, text: str | None = None) -> dict:
        if anchor is None:
            time: dict = {"after": "presentation"}
            if offset:
                time["offset"] = offset
        else:
            time = {"after": anchor}
            fact = self.facts[anchor]
            if self.kinds[anchor] == "medications" and "end" not in fact and "duration" not in fact:
                time["edge"] = "start"
            if offset:
                time["offset"] = offset
        if text:
            time["text"] = text
        return time

    def named_anchor(self, word: str) -> str | None:
        keys = {entry.key for entry in lexicon() if entry.literal.lower() == word.lower() and entry.key}
        for section in ("procedures", "medications", "conditions"):
            fact = self.latest(section, lambda f: f.get("concept") in keys
                               or any(a.get("concept") in keys for a in f.get("agents", [])))
            if fact:
                return fact["id"]
        return None

    def applies(self, expression: timeexpr.TimeExpression, sentence: Sentence, mention: Mention | None) -> bool:
        """A time opening the sentence dates all of it; a later one dates the mention just before it
        ('Symptom control was achieved … but severe crisis recurred after 1 year' dates the crisis only)."""
        if mention is None or expression.start <= 20:
            return True
        rel = mention.clean_start - sentence.start
        if expression.start < rel:
            return False
        between = [m for m in self.sentence_mentions if rel < m.clean_start - sentence.start < expression.start
                   and m.category not in ("site", "lab")]
        return not between

    def event_time(self, sentence: Sentence, times: list[timeexpr.TimeExpression], index: int = 0,
                   mention: Mention | None = None) -> dict:
        for expression in times:
            if expression.kind in ("after", "after-named", "respectively") and self.applies(expression, sentence,
                                                                                           mention):
                anchor = self.last_event
                if expression.kind == "after-named" and expression.anchor_word:
                    anchor = self.named_anchor(expression.anchor_word) or anchor
                offsets = expression.offsets
                offset = offsets[min(index, len(offsets) - 1)]
                return self.anchor_time(anchor, offset, expression.text)
        return self.anchor_time(self.last_event)

    @staticmethod
    def duration(times: list[timeexpr.TimeExpression]) -> dict | None:
        for expression in times:
            if expression.kind == "duration":
                return {**expression.offsets[0], "text": expression.text}
        return None

    def cite_times(self, fact_id: str, sentence: Sentence, times: list[timeexpr.TimeExpression]) -> None:
        for expression in times:
            self.cite_span(fact_id, sentence, expression.start, expression.end, "time", "timeexpr.py",
                           kind=expression.kind, offsets=list(expression.offsets))
