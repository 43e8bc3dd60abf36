"""Clean-up of a narrative with an offset map back to the untouched original.

Two repairs make sentences whole again: a word hyphenated across a line break is rejoined ("long-\\nacting"),
and a figure caption printed in the middle of a sentence is cut out so the sentence closes over it. Every
character of the clean text remembers its position in the original, so evidence always quotes the original.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# A caption starts a line with "Figure N." or "Table N." and runs to the next blank line.
_CAPTION = re.compile(r"(?m)^[ \t]*(?:Figure|Fig\.|Table)\s+\d+\.[^\n]*(?:\n(?![ \t]*\n)[^\n]*)*\n?(?:[ \t]*\n)*")
_HYPHEN_BREAK = re.compile(r"(?<=\w)-\n[ \t]*(?=\w)")


@dataclass(frozen=True)
class CleanText:
    original: str
    text: str
    positions: tuple[int, ...]  # positions[i]: index in `original` of clean character i
    captions: tuple[tuple[int, int], ...]  # original spans cut out as captions

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of clean characters [start, end)."""
        if end <= start:
            point = self.positions[start] if start < len(self.positions) else len(self.original)
            return point, point
        return self.positions[start], self.positions[end - 1] + 1


def clean(original: str) -> CleanText:
    removed: list[tuple[int, int, str]] = []  # (start, end, replacement) in the original
    captions = tuple((m.start(), m.end()) for m in _CAPTION.finditer(original))
    removed.extend((s, e, "") for s, e in captions)
    for m in _HYPHEN_BREAK.finditer(original):
        if not any(s <= m.start() < e for s, e in captions):
            removed.append((m.start() + 1, m.end(), ""))  # keep the hyphen: "long-acting", "tech-niques"
    removed.sort()
    chars: list[str] = []
    positions: list[int] = []
    cursor = 0
    for start, end, replacement in removed:
        if start < cursor:
            continue
        chars.extend(original[cursor:start])
        positions.extend(range(cursor, start))
        chars.extend(replacement)
        positions.extend([start] * len(replacement))
        cursor = end
    chars.extend(original[cursor:])
    positions.extend(range(cursor, len(original)))
    return CleanText(original, "".join(chars), tuple(positions), captions)
