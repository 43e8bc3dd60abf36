"""Outcome mentions: symptom control, radiological and biomarker response, disease status, each tied to the
treatment the sentence credits (or, when it names none, the treatment the narrative was last about)."""
from __future__ import annotations

from narrative.assemble import STOP_CUE
from narrative.mentions import Mention, Sentence

ANTITUMOUR = ("radiological-response", "disease-status", "biomarker-response")


def outcome_mention(reader, mention: Mention, sentence: Sentence, here: list[Mention], times) -> str | None:
    attrs = mention.attributes
    if mention.assertion != "present" or (attrs.get("needs") and attrs["needs"] not in sentence.text.lower()):
        return None
    kind = attrs["kind"]
    treatments = _credited(reader, mention, sentence, here)
    if not treatments:
        fallback = reader.latest_treatment(antitumour=kind in ANTITUMOUR, before=reader.sentence_new)
        treatments = [fallback["id"]] if fallback else []
    if not treatments:
        return None
    for fact_id in list(treatments):
        treatments.extend(i for i in reader.facts[fact_id].get("combinedWith", []) if i not in treatments)
    offset = next((t for t in times if t.kind in ("after", "after-named") and reader.applies(t, sentence, mention)),
                  None)
    time: dict = {"after": treatments[0], "edge": "start"}
    if offset:
        time = {"after": treatments[0], "offset": offset.offsets[0], "text": offset.text}
    fact: dict = {"kind": kind, "value": attrs["value"], "treatments": treatments, "method": attrs.get("method"),
                  "time": time, "text": mention.text}
    if attrs.get("transient"):
        fact["transient"] = True
    focus = reader.latest("conditions", lambda f: f["role"] == ("primary-tumour" if kind == "symptom-control"
                                                                 else "metastasis"))
    if focus:
        fact["focus"] = focus["id"]
    duration = reader.duration(times)
    if duration:
        fact["duration"] = duration
    if kind == "biomarker-response":
        fact["evidence"] = _biomarker_evidence(reader, treatments[0])
    made = reader.add("outcomes", f"{kind}-{attrs['value']}", {k: v for k, v in fact.items() if v is not None},
                      mention, event=False)
    reader.cite_times(made["id"], sentence, times)
    return made["id"]


def _credited(reader, mention: Mention, sentence: Sentence, here: list[Mention]) -> list[str]:
    credited = []
    for other in here:
        if other.category not in ("procedure", "medication") or other.assertion != "present":
            continue
        fact_id = reader.mention_fact.get(id(other))
        if not fact_id or fact_id not in reader.facts or reader.kinds[fact_id] not in ("procedures", "medications"):
            continue
        rel = other.clean_start - sentence.start
        if STOP_CUE.search(sentence.text[max(0, rel - 25):rel]):
            continue
        if other.start < mention.start or " with " in reader.clean.original[mention.end:other.start]:
            credited.append(fact_id)
    return list(dict.fromkeys(credited))


def _biomarker_evidence(reader, treatment: str) -> list[str]:
    before = [f for f in reader.case.get("observations", []) if f["id"] in reader.sentence_new and "value" in f]
    ids = [f["id"] for f in before]
    if before:
        normal = reader.add("observations", f"{before[0]['id']}-after", {
            "kind": before[0]["kind"], "text": before[0]["text"], "result": "normal",
            "time": {"after": treatment, "text": "after treatment"}}, None, event=False)
        ids.append(normal["id"])
    return ids
