"""The medspaCy pipelines: a blank English tokenizer, rule-based sentences, the target matcher fed by our lexicon,
ConText with our oncology rules, and the sectionizer with our case-report headings. Nothing is downloaded."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import spacy
from medspacy.context import ConTextRule
from medspacy.section_detection import SectionRule
from medspacy.target_matcher import TargetRule
from spacy.language import Language

from narrative.rules import context_rules, lexicon, section_rules


@lru_cache(maxsize=1)
def extraction_pipeline() -> Language:
    nlp = spacy.blank("en")
    # spaCy's rule-based sentencizer: PyRuSH (medspaCy's default) gives the same boundaries on case reports but
    # takes ~4 s per 17,000 characters; mentions.py adds the splits both miss ("remnant. 9 months later").
    nlp.add_pipe("sentencizer")
    matcher: Any = nlp.add_pipe("medspacy_target_matcher")  # add_pipe is typed as returning a plain callable
    matcher.add([TargetRule(entry.literal, entry.category, pattern=token_pattern(entry.literal),
                            metadata={"index": index}) for index, entry in enumerate(lexicon())])
    context: Any = nlp.add_pipe("medspacy_context", config={"rules": None})
    context.add([_context_rule(rule) for rule in context_rules()])
    return nlp


@lru_cache(maxsize=1)
def section_pipeline() -> Language:
    # Headings must stand on their own line: "as illustrated by case 2" in a discussion is no heading.
    nlp = spacy.blank("en")
    sectionizer: Any = nlp.add_pipe("medspacy_sectionizer", config={
        "rules": None, "require_start_line": True, "require_end_line": True})
    sectionizer.add([SectionRule(rule["literal"], rule["category"], pattern=rule.get("pattern"))
                     for rule in section_rules()])
    return nlp


def token_pattern(literal: str) -> list[dict] | None:
    """'~lost # kg of weight': a spaCy token pattern ('#' a number, '*N' up to N tokens); plain literals: None."""
    if not literal.startswith("~"):
        return None
    pattern: list[dict] = []
    for word in literal[1:].split():
        if word == "#":
            pattern.append({"LIKE_NUM": True})
        elif word.startswith("*") and word[1:].isdigit():
            pattern.extend({"IS_SPACE": False, "OP": "?"} for _ in range(int(word[1:])))
        else:
            pattern.append({"LOWER": word.lower()})
    return pattern


def _context_rule(rule: dict) -> ConTextRule:
    options = {name: rule[name] for name in ("max_scope", "pattern") if name in rule}
    for name in ("allowed_types", "excluded_types"):
        if name in rule:
            options[name] = set(rule[name])
    return ConTextRule(rule["literal"], rule["category"], direction=rule.get("direction", "BIDIRECTIONAL"), **options)
