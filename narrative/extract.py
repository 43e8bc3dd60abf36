"""The engine's entry point: one text in, one draft per patient out (several for 'Case 1', 'Case 2' …)."""
from __future__ import annotations

import hashlib

from narrative.facts import CaseReader
from narrative.mentions import section_mentions
from narrative.pipeline import extraction_pipeline, section_pipeline
from narrative.textmap import CleanText, clean


def case_ranges(cleaned: CleanText) -> list[tuple[str | None, int, int]]:
    """(label, start, end) in clean-text offsets: each 'Case N' section, else every section that is not a
    discussion (the narrative of a letter or discharge summary without headings is one patient)."""
    doc = section_pipeline()(cleaned.text)
    sections = [(s.category, doc[s.title_start:s.title_end].text.strip(), doc[s.body_start:s.body_end])
                for s in doc._.sections if s.body_end > s.body_start]
    cases: list[tuple[str | None, int, int]] = [(title, body.start_char, body.end_char) for category, title, body in sections if category == "case"]
    if cases:
        return cases
    kept = [(body.start_char, body.end_char) for category, _, body in sections if category != "discussion"]
    if not sections:
        return [(None, 0, len(cleaned.text))]
    return [(None, start, end) for start, end in kept]


def extract_drafts(text: str) -> list[dict]:
    cleaned = clean(text)
    doc = extraction_pipeline()(cleaned.text.replace("\n", " "))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    ranges = case_ranges(cleaned)
    drafts = []
    labelled = [r for r in ranges if r[0]]
    # No patient section at all (a text that is only discussion): no draft rather than an empty one.
    groups = [[r] for r in labelled] if labelled else ([ranges] if ranges else [])
    for number, group in enumerate(groups, start=1):
        label = group[0][0]
        sentences, mentions = [], []
        for _, start, end in group:
            found_sentences, found_mentions = section_mentions(doc, cleaned, start, end)
            sentences.extend(found_sentences)
            mentions.extend(found_mentions)
        reader = CaseReader(cleaned, f"extracted-{digest}-{number}", label or "")
        if label:
            reader.case["source"] = {"citation": "extracted from narrative text", "section": label}
        draft = reader.read(sentences, mentions)
        o_start, _ = cleaned.span(group[0][1], group[0][1] + 1)
        _, o_end = cleaned.span(group[-1][2] - 1, group[-1][2])
        drafts.append({"label": label, "start": o_start, "end": o_end, "case": draft.case,
                       "evidence": draft.evidence, "mentions": draft.mentions,
                       "unmapped": [m for m in draft.mentions if m["key"] is None or m["fact"] is None]})
    return drafts
