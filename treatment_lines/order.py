"""Orders therapies by the partial order of their starts: a linear extension, and a set's first and last members."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from treatment_lines.timeline import Timeline
from treatment_lines.times import EPS

if TYPE_CHECKING:
    from treatment_lines.events import Therapy
    from treatment_lines.lines import Line


def _start(item: Therapy) -> tuple[str, str]:
    return (item.key, "start")


def before(tl: Timeline, a: Therapy, b: Therapy) -> bool:
    """a's start is proven not later than b's, and not the other way round."""
    return tl.le(_start(a), _start(b)) and not tl.le(_start(b), _start(a))


def linked(a: Therapy, b: Therapy) -> bool:
    """Recorded as given together: combined-with, one request group, or the very same relative start."""
    return (a.key in b.combined_with or b.key in a.combined_with or bool(a.group and a.group == b.group)
            or bool(a.start_signature and a.rtype == b.rtype and a.start_signature == b.start_signature))


def extreme_nodes(tl: Timeline, nodes: list[tuple[str, str]], latest: bool = False) -> list[tuple[str, str]]:
    """The nodes no other node is proven to precede (latest=True: to follow), in input order.

    The earliest (latest) of a set of events is always one of these, so bounds computed over them are the
    bounds over the whole set, at a fraction of the pairs."""
    def ahead(a: tuple[str, str], b: tuple[str, str]) -> bool:  # a is proven to come first in the wanted sense
        x, y = (b, a) if latest else (a, b)
        return tl.le(x, y) and not tl.le(y, x)
    found: list[tuple[str, str]] = []
    for node in _candidates(tl, nodes, latest):
        if not any(ahead(f, node) for f in found):
            found = [f for f in found if not ahead(node, f)] + [node]
    keep = set(found)
    return [n for n in nodes if n in keep]


def _candidates(tl: Timeline, nodes: list[tuple[str, str]], latest: bool) -> list[tuple[str, str]]:
    """Drops nodes a frame alone proves dominated (earliest possible time after another's latest possible time):
    they cannot be extremes, nor the only node dominating another (domination is transitive)."""
    keep = nodes
    for frame in tl.frames():
        if latest:
            bound = max((tl.low(n, frame) for n in keep), default=-math.inf)
            if math.isfinite(bound):
                keep = [n for n in keep if not tl.high(n, frame) < bound - EPS]
        else:
            bound = min((tl.high(n, frame) for n in keep), default=math.inf)
            if math.isfinite(bound):
                keep = [n for n in keep if not tl.low(n, frame) > bound + EPS]
    return keep


def extremes(tl: Timeline, items: list[Therapy], latest: bool = False) -> list[Therapy]:
    """The items whose start no other item's start is proven to precede (latest=True: to follow)."""
    keep = set(extreme_nodes(tl, [_start(i) for i in items], latest))
    return [i for i in items if _start(i) in keep]


def first_items(line: Line, tl: Timeline) -> list[Therapy]:
    """The line's therapies that no other therapy of the line is proven to precede: where the line starts."""
    return list(line.first)


class _Remaining:
    """Therapies not yet placed, with per-frame indexes of the latest possible start to find predecessors fast."""

    def __init__(self, ordered: list[Therapy], tl: Timeline):
        self.items, self.tl = ordered, tl
        self.removed = [False] * len(ordered)
        self.front = 0
        self.by_frame = []
        for frame in tl.frames():
            bounds = [tl.bounds(_start(i), frame) for i in ordered]
            entries = sorted((b[1], n) for n, b in enumerate(bounds) if math.isfinite(b[1]))
            self.by_frame.append((frame, [b[0] for b in bounds], entries, [0]))
        self.component: dict[int, list[int]] = {}
        for n, item in enumerate(ordered):
            comp = tl.component(_start(item))
            if comp is not None:
                self.component.setdefault(comp, []).append(n)

    def remove(self, n: int) -> None:
        self.removed[n] = True
        while self.front < len(self.items) and self.removed[self.front]:
            self.front += 1

    def preceded(self, n: int) -> bool:
        """Some other remaining therapy is proven to start before this one (exactly the all-pairs test)."""
        c = self.items[n]
        for _, lows, entries, pointer in self.by_frame:
            low = lows[n]
            if not math.isfinite(low):
                continue
            while pointer[0] < len(entries) and self.removed[entries[pointer[0]][1]]:
                pointer[0] += 1
            # By position, not `entries[pointer:]`: a slice would copy the whole remaining list on every call
            # (quadratic in the history) only for the loop to stop after a few entries.
            for k in range(pointer[0], len(entries)):
                hi, m = entries[k]
                if hi > low + EPS:
                    break
                if m != n and not self.removed[m] and not self.tl.le(_start(c), _start(self.items[m])):
                    return True
        comp = self.tl.component(_start(c))
        if comp is None:
            return False
        return any(m != n and not self.removed[m] and before(self.tl, self.items[m], c)
                   for m in self.component.get(comp, ()))


def linear_order(items: list[Therapy], tl: Timeline) -> list[Therapy]:
    """A linear extension of the known order of starts; unordered ties go by earliest possible time, then key.

    Therapies recorded as given together follow each other directly, so that how resources happen to be
    named never splits a regimen around an unrelated therapy of uncertain time."""
    ordered = sorted(items, key=lambda i: (tl.sort_key(_start(i)), i.key))
    partners = _partners(ordered)
    remaining = _Remaining(ordered, tl)
    result: list[Therapy] = []
    while len(result) < len(ordered):
        candidates = (n for n in range(remaining.front, len(ordered)) if not remaining.removed[n])
        first = remaining.front
        pick = next((n for n in candidates if not remaining.preceded(n)), first)
        for n in [pick] + sorted(partners.get(pick, set()) - {pick}):
            if not remaining.removed[n]:
                result.append(ordered[n])
                remaining.remove(n)
    return result


def _partners(ordered: list[Therapy]) -> dict[int, set[int]]:
    """Position -> positions of the therapies linked to it (the `linked` relation, through indexes)."""
    index: dict[str, list[int]] = {}
    position = {item.key: n for n, item in enumerate(ordered)}
    for n, item in enumerate(ordered):
        if item.group:
            index.setdefault(f"group:{item.group}", []).append(n)
        if item.start_signature:
            index.setdefault(f"sig:{item.rtype}:{item.start_signature}", []).append(n)
    found: dict[int, set[int]] = {}
    for members in index.values():
        for n in members:
            found.setdefault(n, set()).update(members)
    for n, item in enumerate(ordered):
        for key in item.combined_with:
            if key in position:
                found.setdefault(n, set()).add(position[key])
                found.setdefault(position[key], set()).add(n)
    return found
