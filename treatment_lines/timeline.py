"""The partial order of events: a simple temporal network solved once per patient.

Nodes are (resource key, 'start'|'end') plus one origin per frame. Each constraint lo <= t(b) - t(a) <= hi is
two edges; all-pairs shortest paths (Floyd-Warshall) then give the tightest known bounds between any two
events. "A before B" is known only when the bounds prove it, so "after X, delay unknown" orders events
without inventing a date, and two events whose order the data leave open stay unordered.
"""
from __future__ import annotations

import math

from treatment_lines.resources import ResourceIndex
from treatment_lines.times import EPS, INF, Absolute, Relative, date_bounds, resource_times

FRAMES = ("date", "age", "relative")
POINT_EVENTS = ("Procedure", "MedicationAdministration")
Node = tuple[str, str]


def origin(frame: str) -> Node:
    return ("#origin", frame)


class Timeline:
    def __init__(self, index: ResourceIndex):
        self.issues: list[dict] = []
        absolute: list[Absolute] = []
        relative: list[Relative] = []
        for key, resource in index.by_key.items():
            found_abs, found_rel = resource_times(key, resource)
            absolute += found_abs
            for rel in found_rel:
                target = index.resolve(rel.target[0])
                if target is None:
                    self.issues.append({"code": "unresolved-reference", "references": [key],
                                        "message": f"time relative to {rel.target[0]}, which is not in the input"})
                    continue
                relative.append(Relative(rel.node, (target, rel.target[1]), rel.lo, rel.hi))
        nodes = {origin(a.frame) for a in absolute}
        for key in index.by_key:
            nodes |= {(key, "start"), (key, "end")}
        self.nodes = sorted(nodes)
        self._pos = {n: i for i, n in enumerate(self.nodes)}
        self._dist = [[INF] * len(self.nodes) for _ in self.nodes]
        for i in range(len(self.nodes)):
            self._dist[i][i] = 0.0
        for a in absolute:
            self._constrain(origin(a.frame), a.node, a.lo, a.hi)
        for r in relative:
            self._constrain(r.target, r.node, r.lo, r.hi)
        self.anchored = {a.node for a in absolute} | {r.node for r in relative}
        for key, resource in index.by_key.items():
            self._constrain((key, "start"), (key, "end"), 0.0, INF)  # nothing ends before it starts
            if resource.get("resourceType") in POINT_EVENTS and (key, "end") not in self.anchored:
                self._constrain((key, "start"), (key, "end"), 0.0, 0.0)  # without an end it happened at one time
        self._link_birth(index)
        self._solve()

    def _constrain(self, a: Node, b: Node, lo: float, hi: float) -> None:
        i, j = self._pos[a], self._pos[b]
        self._dist[i][j] = min(self._dist[i][j], hi)
        self._dist[j][i] = min(self._dist[j][i], -lo)

    def _link_birth(self, index: ResourceIndex) -> None:
        """With a birth date, ages and dates become comparable: birth is the age frame's origin."""
        patient = index.patient()
        birth = date_bounds(patient[1].get("birthDate", "")) if patient and patient[1].get("birthDate") else None
        if birth and origin("age") in self._pos and origin("date") in self._pos:
            self._constrain(origin("date"), origin("age"), *birth)

    def _solve(self) -> None:
        dist = self._dist
        for k in range(len(dist)):
            row_k = dist[k]
            for row in dist:
                via = row[k]
                if via == INF:
                    continue
                row[:] = [v if v <= via + w else via + w for v, w in zip(row, row_k)]
        if any(dist[i][i] < -1e-3 for i in range(len(dist))):
            self.issues.append({"code": "timeline-inconsistent", "references": [],
                                "message": "the recorded times contradict each other; order is unreliable"})

    # -- queries -------------------------------------------------------------------------------
    def has(self, node: Node) -> bool:
        return node in self._pos

    def diff(self, a: Node, b: Node) -> tuple[float, float]:
        """Bounds of t(b) - t(a) in days."""
        i, j = self._pos[a], self._pos[b]
        return -self._dist[j][i], self._dist[i][j]

    def le(self, a: Node, b: Node) -> bool:
        """True when the data prove that a is not later than b."""
        return self.diff(a, b)[0] >= -EPS

    def lt(self, a: Node, b: Node, by: float = 0.0) -> bool:
        """True when the data prove that b is more than `by` days after a."""
        return self.diff(a, b)[0] > by + EPS

    def within(self, a: Node, b: Node, days: float) -> bool:
        """True when b is proven to lie within `days` of a, on either side (same-day dates are within 0)."""
        lo, hi = self.diff(a, b)
        return lo >= -days - 1.0 and hi <= days + 1.0

    def placed(self, node: Node) -> tuple[str, float, float] | None:
        """(frame, lo, hi) of a node on the first frame that bounds it at all."""
        for frame in FRAMES:
            if origin(frame) in self._pos:
                lo, hi = self.diff(origin(frame), node)
                if math.isfinite(lo) or math.isfinite(hi):
                    return frame, lo, hi
        return None

    def sort_key(self, node: Node) -> tuple:
        """A deterministic tie-break for events the partial order leaves unordered: earliest possible time."""
        placed = self.placed(node)
        return (FRAMES.index(placed[0]), placed[1]) if placed and math.isfinite(placed[1]) else (len(FRAMES), 0.0)
