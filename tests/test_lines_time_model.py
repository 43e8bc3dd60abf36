"""The sparse time model gives exactly the bounds of all-pairs shortest paths, and reports contradictions."""
from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from lines_builders import patient, statement

from treatment_lines.engine import summarise
from treatment_lines.network import INF, NegativeCycle, Network


def floyd(nodes, edges):
    dist = {a: {b: (0.0 if a == b else edges[a].get(b, INF)) for b in nodes} for a in nodes}
    for k, a, b in itertools.product(nodes, nodes, nodes):
        dist[a][b] = min(dist[a][b], dist[a][k] + dist[k][b])
    return dist


@st.composite
def networks(draw):
    """Random constraint graphs: a few origins with absolute bounds, relations between events, start <= end."""
    events = [(f"e{n}", edge) for n in range(draw(st.integers(2, 7))) for edge in ("start", "end")]
    origins = [("#origin", f) for f in ("date", "age")[:draw(st.integers(1, 2))]]
    nodes = origins + events
    edges = {n: {} for n in nodes}

    def constrain(a, b, lo, hi):
        if hi < edges[a].get(b, INF):
            edges[a][b] = hi
        if -lo < edges[b].get(a, INF):
            edges[b][a] = -lo
    for n in range(0, len(events), 2):
        constrain(events[n], events[n + 1], 0.0, INF)
    for node in events:
        if draw(st.booleans()):
            lo = draw(st.integers(0, 100))
            constrain(draw(st.sampled_from(origins)), node, lo, lo + draw(st.integers(0, 40)))
    for _ in range(draw(st.integers(0, 6))):
        a, b = draw(st.sampled_from(events)), draw(st.sampled_from(events))
        if a != b:
            lo = draw(st.integers(-20, 30))
            constrain(a, b, lo, lo + draw(st.integers(0, 30)) if draw(st.booleans()) else INF)
    return nodes, edges, origins


@settings(max_examples=150, deadline=None)
@given(networks())
def test_sparse_bounds_equal_all_pairs_shortest_paths(network):
    nodes, edges, origins = network
    reference = floyd(nodes, edges)
    if any(reference[n][n] < -1e-9 for n in nodes):
        try:
            Network(nodes, edges, origins)
        except NegativeCycle:
            return
        raise AssertionError("a contradiction went unnoticed")
    net = Network(nodes, edges, origins)
    for a, b in itertools.product(nodes, nodes):
        want, got = reference[a][b], net.distance(a, b)
        assert (math.isinf(want) and math.isinf(got)) or abs(want - got) < 1e-6, (a, b, want, got)


def test_contradicting_times_are_reported_and_the_rest_still_read():
    later = statement("b", "4492", "2015-06-01", "2015-07-01")
    # b claims to start 10 days before a, which starts on a date after b's own start: a contradiction.
    a = statement("a", "10114", "2015-08-01", "2015-09-01", extension=[{
        "url": "http://hl7.org/fhir/StructureDefinition/cqf-relativeDateTime",
        "extension": [{"url": "target", "valueReference": {"reference": "MedicationStatement/b"}},
                      {"url": "relationship", "valueCode": "before-start"},
                      {"url": "offset", "valueDuration": {"value": 10, "unit": "d", "code": "d"}}]}])
    summary = summarise([patient(), later, a])
    assert "timeline-inconsistent" in {f["code"] for f in summary["flags"]}
    assert [line["name"] for line in summary["lines"]] == ["fluorouracil", "streptozocin"]
