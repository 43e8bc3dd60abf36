"""Medication mentions: a new regimen, another agent of the regimen just named, a dose step, or a stop."""
from __future__ import annotations

import re

from narrative import quantities
from narrative.assemble import INCREASE_CUE, ROUTES, START_CUE, STOP_CUE
from narrative.mentions import Mention, Sentence

STOPPED_AFTER = re.compile(r"^\S*\s+(?:was|were)\s+(?:then\s+|later\s+|finally\s+)?"
                           r"(?:stopped|discontinued|interrupted|withdrawn)\b", re.IGNORECASE)
JOINED = re.compile(r"^\s*(?:\(|,|and|with|plus|\+)\s*(?:\w+\s+)?$", re.IGNORECASE)


def medication_mention(reader, mention: Mention, sentence: Sentence, here: list[Mention], times, handled) -> str | None:
    if mention.assertion != "present":
        return None
    rel = mention.clean_start - sentence.start
    before = sentence.text[max(0, rel - 30):rel]
    key = mention.key or mention.text.lower()
    route = _route(sentence.text, rel)
    formulation = mention.attributes.get("formulation")
    active = reader.latest("medications", lambda f: any(a.get("concept", a["text"].lower()) == key for a in f["agents"])
                           and f.get("status") not in ("stopped",) and "end" not in f and "duration" not in f)
    alias = _alias_of(reader, mention, here)
    if alias:
        reader.cite(alias, mention)
        return alias
    after = sentence.text[mention.clean_end - sentence.start:]
    if active and (STOP_CUE.search(before) or STOPPED_AFTER.match(after)):
        active["end"] = reader.event_time(sentence, times, mention=mention)
        active["status"] = "stopped"
        if re.search(r"\bdecided|refused|declined\b", sentence.text):
            active["statusReason"] = {"concept": "refusal-by-patient", "text": sentence.text.strip()}
        reader.cite(active["id"], mention, role="stop")
        return active["id"]
    resumed = bool(START_CUE.search(sentence.text[rel:]))
    different = active is not None and ((route and active.get("_route") != route)
                                        or (formulation and active.get("formulation") != formulation))
    if active and not resumed and not different:
        reader.cite(active["id"], mention)
        _dose_steps(reader, active, mention, sentence, here, first=False)
        return active["id"]
    partner = _partner(reader, mention, sentence, here)
    if partner is not None:
        partner["agents"].append(_agent(mention))
        reader.cite(partner["id"], mention)
        return partner["id"]
    return _new_regimen(reader, mention, sentence, here, times, route, formulation, active if different else None)


def _new_regimen(reader, mention, sentence, here, times, route, formulation, replaced) -> str:
    procedure = next((f for f in reader.case.get("procedures", [])
                      if f["id"] in reader.sentence_new or f["id"] in reader.sentence_refs), None)
    start = {"at": procedure["id"]} if procedure else reader.event_time(sentence, times)
    fact: dict = {"agents": [_agent(mention)], "formulation": formulation, "start": start}
    if mention.attributes.get("intent"):
        fact["intent"] = mention.attributes["intent"]
    duration = reader.duration(times)
    if duration:
        fact["duration"] = duration
        if procedure and "duration" not in procedure:
            procedure["duration"] = duration
    fact = {k: v for k, v in fact.items() if v is not None}
    made = reader.add("medications", f"{mention.key or mention.text}", fact, mention)
    made["_route"] = route
    made["_ssa"] = mention.attributes.get("class") == "ssa"
    if procedure and "combination" in sentence.text.lower():
        made["combinedWith"] = [procedure["id"]]
        procedure.setdefault("combinedWith", []).append(made["id"])
    for other in reader.case.get("medications", []):
        if other is not made and other["id"] in reader.sentence_new and other.get("_route") == route \
                and (other.get("intent") == "supportive") != (made.get("intent") == "supportive"):
            other.setdefault("combinedWith", []).append(made["id"])
            made.setdefault("combinedWith", []).append(other["id"])
    if replaced is not None:
        replaced["end"] = {"at": made["id"], "edge": "start"}
        replaced["status"] = "completed"
    _dose_steps(reader, made, mention, sentence, here, first=True)
    if route and not made.get("dosages"):
        dosage: dict = {"route": {"concept": route, "text": route.capitalize()}}
        if "continuous" in sentence.text.lower():
            dosage["frequency"] = {"continuous": True, "text": "continuous perfusion"}
        made["dosages"] = [dosage]
    reader.cite_times(made["id"], sentence, times)
    return made["id"]


def _agent(mention: Mention) -> dict:
    return {k: v for k, v in (("concept", mention.key), ("text", mention.text)) if v}


def _route(text: str, rel: int) -> str | None:
    window = text[max(0, rel - 45):rel].lower()
    found = [(window.rfind(word), concept) for word, concept in ROUTES.items() if word in window]
    return max(found)[1] if found else None


def _alias_of(reader, mention: Mention, here: list[Mention]) -> str | None:
    """'5-fluorouracil (5-FU)': the bracketed abbreviation is the same agent, not a second one."""
    for other in here:
        if other is mention or other.key != mention.key or other.end > mention.start:
            continue
        between = reader.clean.original[other.end:mention.start]
        if between.strip() == "(":
            return reader.mention_fact.get(id(other))
    return None


def _partner(reader, mention: Mention, sentence: Sentence, here: list[Mention]) -> dict | None:
    """The regimen begun by the medication named just before ('streptozotozine and 5-FU')."""
    if mention.attributes.get("intent") == "supportive":
        return None
    previous = [m for m in here if m.category == "medication" and m.end <= mention.start and m.assertion == "present"]
    if not previous:
        return None
    last = previous[-1]
    fact_id = reader.mention_fact.get(id(last))
    fact = reader.facts.get(fact_id) if fact_id else None
    if fact is None or fact_id not in reader.sentence_new or fact.get("intent") == "supportive":
        return None
    between = reader.clean.original[last.end:mention.start]
    between = re.sub(r"\([^)]*\)|\)", "", between)
    return fact if JOINED.match(between) else None


def _dose_steps(reader, fact: dict, mention: Mention, sentence: Sentence, here: list[Mention], first: bool) -> None:
    rel = mention.clean_start - sentence.start
    following = [m for m in here if m.category == "medication" and m.start > mention.start]
    stop_at = following[0].clean_start - sentence.start if following else len(sentence.text)
    route = fact.get("_route")
    for index, found in enumerate(d for d in quantities.doses(sentence.text) if rel < d.start < stop_at):
        dosage = dict(found.value)
        if route:
            dosage["route"] = {"concept": route, "text": route.capitalize()}
        if index > 0 or not first:
            if not INCREASE_CUE.search(sentence.text[rel:found.start]):
                continue
            dosage = {"start": {"after": fact["id"], "edge": "start", "text": "later changed"}, **dosage}
        fact.setdefault("dosages", []).append(dosage)
        unit = (found.value.get("dose") or found.value.get("dailyDose") or {}).get("unit", "")
        reader.cite_span(fact["id"], sentence, found.start, found.end, "dosage", "quantities.py DOSE",
                         type="dosage", value=found.value, assertion="present", ucum=quantities.ucum_code(unit))
