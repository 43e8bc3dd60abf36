"""Mentions: every lexicon match of one case section with its original span, its rule and its ConText assertion."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from spacy.tokens import Doc, Span

from narrative.rules import LexiconEntry, lexicon
from narrative.textmap import CleanText

# ConText categories, in the order one wins over another when several modify a mention.
ASSERTIONS = (("FAMILY", "family"), ("NOT_DONE", "not-done"), ("NOT_AVAILABLE", "not-available"),
              ("NEGATED_EXISTENCE", "negated"), ("HYPOTHETICAL", "hypothetical"), ("HISTORICAL", "historical"))


@dataclass
class Sentence:
    index: int
    start: int  # clean-text offsets
    end: int
    text: str  # clean text, newlines as spaces


@dataclass
class Mention:
    category: str
    key: str | None
    start: int  # original offsets
    end: int
    text: str  # original[start:end]
    clean_start: int
    clean_end: int
    sentence: Sentence
    entry: LexiconEntry
    assertion: str = "present"
    cue: dict | None = None  # the ConText modifier behind a non-present assertion
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def rule(self) -> str:
        return f"{self.entry.rule_id} ({self.entry.literal!r})"


def evidence(clean: CleanText, start: int, end: int, rule: str) -> dict:
    """An evidence record for clean-text offsets: original offsets, the original text there, the rule."""
    o_start, o_end = clean.span(start, end)
    return {"start": o_start, "end": o_end, "text": clean.original[o_start:o_end], "rule": rule}


def section_mentions(doc: Doc, clean: CleanText, start: int, end: int) -> tuple[list[Sentence], list[Mention]]:
    """Sentences and mentions of the clean-text range [start, end) of an analysed document."""
    entries = lexicon()
    sentences = [Sentence(i, a, b, doc.text[a:b]) for i, (a, b) in enumerate(_sentence_spans(doc))
                 if b > start and a < end and doc.text[a:b].strip()]
    mentions = []
    for ent in doc.ents:
        if ent.start_char < start or ent.end_char > end:
            continue
        sentence = next((s for s in sentences if s.start <= ent.start_char < s.end), None)
        if sentence is None:
            continue
        mentions.append(_mention(ent, clean, sentence, entries))
    return sentences, mentions


# PyRuSH keeps "… liver remnant. 9 months later, she …" as one sentence; a full stop followed by a digit or a
# capital starts a new one unless it closes an abbreviation.
_SPLIT = re.compile(r"(?<![A-Z][a-z]\.)(?<!\.[a-z]\.)(?<=[a-z)\]]\.)\s+(?=[A-Z0-9])")


def _sentence_spans(doc: Doc) -> list[tuple[int, int]]:
    spans = []
    for sent in doc.sents:
        cursor = sent.start_char
        for m in _SPLIT.finditer(sent.text):
            spans.append((cursor, sent.start_char + m.start()))
            cursor = sent.start_char + m.end()
        spans.append((cursor, sent.end_char))
    return spans


def _mention(ent: Span, clean: CleanText, sentence: Sentence, entries: tuple[LexiconEntry, ...]) -> Mention:
    entry = entries[ent._.target_rule.metadata["index"]]
    o_start, o_end = clean.span(ent.start_char, ent.end_char)
    mention = Mention(category=entry.category, key=entry.key, start=o_start, end=o_end,
                      text=clean.original[o_start:o_end], clean_start=ent.start_char, clean_end=ent.end_char,
                      sentence=sentence, entry=entry, attributes=dict(entry.attributes))
    categories = {modifier.category: modifier for modifier in ent._.modifiers}
    for category, assertion in ASSERTIONS:
        if category in categories:
            modifier = categories[category]
            cue_start, cue_end = modifier.modifier_span
            cue = ent.doc[cue_start:cue_end]
            mention.assertion = assertion
            mention.cue = evidence(clean, cue.start_char, cue.end_char,
                                   f"context_rules.json ({modifier.rule.literal!r}, {category})")
            break
    return mention
