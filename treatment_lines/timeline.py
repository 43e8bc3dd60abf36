"""The partial order of events: a simple temporal network solved once per patient.

Nodes are (resource key, 'start'|'end') plus one origin per frame. Each constraint lo <= t(b) - t(a) <= hi is
two edges; the sparse solver (treatment_lines.network) gives the tightest known bounds between any two events,
the same bounds all-pairs shortest paths would, in near-linear time. "A before B" is known only when the bounds
prove it, so "after X, delay unknown" orders events without inventing a date, and two events whose order the
data leave open stay unordered.
"""
from __future__ import annotations

import math

from mappings.fhir_vocabulary import RELATIVE_URL
from treatment_lines.network import INF, NegativeCycle, Network, Node
from treatment_lines.resources import ResourceIndex
from treatment_lines.times import (
    EPS,
    Absolute,
    Relative,
    date_bounds,
    point_orders,
    resource_times,
)

FRAMES = ("date", "age", "relative")
POINT_EVENTS = ("Procedure", "MedicationAdministration")
# Dropped in this order when the recorded times contradict each other, until the rest is consistent.
TIERS = ("relation", "intrinsic", "birth")


def origin(frame: str) -> Node:
    return ("#origin", frame)


def _relates(resource: dict) -> bool:
    """The resource states its time relative to another one (cqf-relativeDateTime, on it or on Patient.deceased)."""
    exts = list(resource.get("extension") or [])
    for name in ("_deceasedDateTime", "_deceasedBoolean"):
        exts += (resource.get(name) or {}).get("extension", [])
    return any(e.get("url") == RELATIVE_URL for e in exts)


def _included(index: ResourceIndex, focus: set[str] | None) -> list[str]:
    """The resources whose times can matter for `focus`: itself, every resource stating a relative time (it can
    tie two others together) and the targets of those. A resource with an absolute time only is connected to
    nothing but its frame, so leaving it out changes no bound between the others."""
    if focus is None:
        return list(index.by_key)
    keep = set(focus)
    for key, resource in index.by_key.items():
        if key not in keep and _relates(resource):
            keep.add(key)
    for key in list(keep):
        for ext in index.by_key[key].get("extension") or []:
            if ext.get("url") == RELATIVE_URL:
                target = next((p.get("valueReference") for p in ext.get("extension") or [] if p.get("url") == "target"), None)
                resolved = index.resolve(target)
                if resolved:
                    keep.add(resolved)
    return [k for k in index.by_key if k in keep]


class Timeline:
    def __init__(self, index: ResourceIndex, focus: set[str] | None = None, acting: dict[str, float] | None = None):
        """The partial order over all resources, or (focus given) over those and whatever relates to them.

        `acting`: resource key -> days one dose acts (a long-acting depot); a single administration of it ends
        that long after it was given instead of the same instant."""
        acting = acting or {}
        self.issues: list[dict] = []
        absolute: list[Absolute] = []
        relative: list[Relative] = []
        keys = _included(index, focus)
        for key in keys:
            resource = index.by_key[key]
            found_abs, found_rel = resource_times(key, resource)
            absolute += found_abs
            for rel in found_rel:
                target = index.resolve(rel.target[0])
                if target is None:
                    self.issues.append({"code": "unresolved-reference", "references": [key],
                                        "message": f"time relative to {rel.target[0]}, which is not in the input"})
                    continue
                relative.append(Relative(rel.node, (target, rel.target[1]), rel.lo, rel.hi))
        nodes = {origin(a.frame) for a in absolute} | {r.target for r in relative}
        for key in keys:
            nodes |= {(key, "start"), (key, "end")}
        self.nodes = sorted(nodes)
        self._known = set(self.nodes)
        self.anchored = {a.node for a in absolute} | {r.node for r in relative}
        self.points = point_orders(index)  # orders in a series: each one a single administration
        constraints: list[tuple[str, Node, Node, float, float]] = []
        constraints += [("absolute", origin(a.frame), a.node, a.lo, a.hi) for a in absolute]
        constraints += [("relation", r.target, r.node, r.lo, r.hi) for r in relative]
        for key in keys:
            resource = index.by_key[key]
            constraints.append(("intrinsic", (key, "start"), (key, "end"), 0.0, INF))  # nothing ends before it starts
            point = resource.get("resourceType") in POINT_EVENTS or key in self.points
            if point and (key, "end") not in self.anchored:
                days = acting.get(key, 0.0)  # one time, no end; a depot's action lasts its label's interval
                constraints.append(("intrinsic", (key, "start"), (key, "end"), days, days))
        constraints += self._birth(index)
        self._net = self._solve(constraints)

    def _birth(self, index: ResourceIndex) -> list[tuple[str, Node, Node, float, float]]:
        """With a birth date, ages and dates become comparable: birth is the age frame's origin."""
        patient = index.patient()
        birth = date_bounds(patient[1].get("birthDate", "")) if patient and patient[1].get("birthDate") else None
        if birth and origin("age") in self._known and origin("date") in self._known:
            return [("birth", origin("date"), origin("age"), *birth)]
        return []

    def _solve(self, constraints: list[tuple[str, Node, Node, float, float]]) -> Network:
        ids = {n: i for i, n in enumerate(self.nodes)}
        origins = [n for n in self.nodes if n[0] == "#origin"]
        indexed = [(kind, ids[a], ids[b], lo, hi) for kind, a, b, lo, hi in constraints]  # each node hashed once
        dropped: set[str] = set()
        for tier in (None, *TIERS):
            if tier:
                dropped.add(tier)
            rows: list[dict[int, float]] = [{} for _ in self.nodes]
            for kind, a, b, lo, hi in indexed:
                if kind in dropped:
                    continue
                if hi < rows[a].get(b, INF):
                    rows[a][b] = hi
                if -lo < rows[b].get(a, INF):
                    rows[b][a] = -lo
            try:
                return Network.indexed(self.nodes, ids, rows, origins)
            except NegativeCycle:
                if tier is None:
                    self.issues.append({"code": "timeline-inconsistent", "references": [],
                                        "message": "the recorded times contradict each other; order is unreliable"})
        return self._absolute_only(constraints)

    def _absolute_only(self, constraints: list[tuple[str, Node, Node, float, float]]) -> Network:
        """Last resort: one absolute constraint per node and frame (the first recorded), which cannot conflict."""
        edges: dict[Node, dict[Node, float]] = {n: {} for n in self.nodes}
        seen: set[tuple[Node, Node]] = set()
        for kind, a, b, lo, hi in constraints:
            if kind == "absolute" and (a, b) not in seen:
                seen.add((a, b))
                edges[a][b], edges[b][a] = hi, -lo
        return Network(self.nodes, edges, [n for n in self.nodes if n[0] == "#origin"])

    # -- queries -------------------------------------------------------------------------------
    def diff(self, a: Node, b: Node) -> tuple[float, float]:
        """Bounds of t(b) - t(a) in days."""
        return -self._net.distance(b, a), self._net.distance(a, b)

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
            if origin(frame) in self._known:
                lo, hi = self.diff(origin(frame), node)
                if math.isfinite(lo) or math.isfinite(hi):
                    return frame, lo, hi
        return None

    def sort_key(self, node: Node) -> tuple:
        """A deterministic tie-break for events the partial order leaves unordered: earliest possible time."""
        placed = self.placed(node)
        return (FRAMES.index(placed[0]), placed[1]) if placed and math.isfinite(placed[1]) else (len(FRAMES), 0.0)

    def frames(self) -> list[str]:
        return [f for f in FRAMES if origin(f) in self._known]

    def bounds(self, node: Node, frame: str) -> tuple[float, float]:
        """(lo, hi) days of a node on a frame present in the input."""
        return self.diff(origin(frame), node)

    def component(self, node: Node) -> int | None:
        """Nodes related without any frame origin share a component; others are ordered through the frames only."""
        return self._net.component(node)

    def low(self, node: Node, frame: str) -> float:
        """The earliest possible time of a node on a frame (days; -inf when unbounded): one lookup."""
        return -self._net.to_origin(origin(frame), node)

    def high(self, node: Node, frame: str) -> float:
        """The latest possible time of a node on a frame (days; inf when unbounded): one lookup."""
        return self._net.from_origin(origin(frame), node)
