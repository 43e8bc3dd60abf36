"""A sparse simple temporal network: tightest bounds without all-pairs shortest paths.

Constraints lo <= t(b) - t(a) <= hi are edges a->b (hi) and b->a (-lo). The shortest path d(a, b) bounds
t(b) - t(a) from above. Every path either passes through a frame origin or stays inside one component of
the graph without origins, so

    d(a, b) = min( min over origins o of d(a, o) + d(o, b),  d inside the component of a and b )

which is exact (the same as Floyd-Warshall) at the cost of one shortest-path tree per origin and direction
(Dijkstra on Johnson-reweighted edges) plus the small components, solved lazily when first asked.
Absolute times are edges to an origin, so they are fixed points the search starts from.
"""
from __future__ import annotations

import heapq
import math
from collections import deque

INF = math.inf
Node = tuple[str, str]
# Components up to this size are solved whole (Floyd-Warshall, s^3); larger ones one source at a time.
SMALL_COMPONENT = 24


class NegativeCycle(Exception):
    """The constraints contradict each other."""


class Network:
    def __init__(self, nodes: list[Node], edges: dict[Node, dict[Node, float]], origins: list[Node]):
        self.nodes, self.edges, self.origins = nodes, edges, origins
        self.reverse: dict[Node, dict[Node, float]] = {n: {} for n in nodes}
        for a, targets in edges.items():
            for b, w in targets.items():
                self.reverse[b][a] = w
        self.potential = _potentials(nodes, edges)
        self.from_origin = {o: self._dijkstra(o, self.edges, forward=True) for o in origins}
        self.to_origin = {o: self._dijkstra(o, self.reverse, forward=False) for o in origins}
        self._pairs = [(self.to_origin[o], self.from_origin[o]) for o in origins]
        self._component = _components(nodes, edges, set(origins))
        self._solved: dict[int, dict[Node, dict[Node, float]]] = {}

    def _dijkstra(self, source: Node, graph: dict[Node, dict[Node, float]], forward: bool,
                  allowed: set[Node] | None = None) -> dict[Node, float]:
        """Shortest distances from `source` (to it, on the reversed graph), exact on reweighted edges."""
        h = self.potential
        sign = 1.0 if forward else -1.0
        dist: dict[Node, float] = {source: 0.0}
        heap = [(0.0, source)]
        done: set[Node] = set()
        while heap:
            d, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            for v, w in graph[u].items():
                if allowed is not None and v not in allowed:
                    continue
                nd = d + w + sign * (h[u] - h[v])
                if nd < dist.get(v, INF) - 1e-12:
                    dist[v] = nd
                    heapq.heappush(heap, (nd, v))
        # Undo the reweighting: d_real(s, v) = d'(s, v) - h(s) + h(v) forward, mirrored backward.
        return {v: d - sign * (h[source] - h[v]) for v, d in dist.items()}

    def distance(self, a: Node, b: Node) -> float:
        """d(a, b): the tightest upper bound on t(b) - t(a)."""
        if a == b:
            return 0.0
        best = INF
        for to, frm in self._pairs:
            via = to.get(a, INF) + frm.get(b, INF)
            best = min(best, via)
        comp = self._component.get(a)
        if comp is not None and comp == self._component.get(b):
            inside = self._inside(comp, a, b)
            best = min(best, inside)
        return best

    def component(self, node: Node) -> int | None:
        return self._component.get(node)

    def _inside(self, comp: int, a: Node, b: Node) -> float:
        table = self._solved.get(comp)
        if table is None:
            table = self._solved[comp] = {}
        if a not in table:
            members = self._members(comp)
            if len(members) <= SMALL_COMPONENT:
                table.update(_floyd(members, self.edges))
            else:
                table[a] = self._dijkstra(a, self.edges, True, allowed=set(members))
        return table[a].get(b, INF)

    def _members(self, comp: int) -> list[Node]:
        if not hasattr(self, "_by_component"):
            by: dict[int, list[Node]] = {}
            for node, c in self._component.items():
                by.setdefault(c, []).append(node)
            self._by_component = by
        return self._by_component[comp]


def _potentials(nodes: list[Node], edges: dict[Node, dict[Node, float]]) -> dict[Node, float]:
    """Bellman-Ford from a virtual source at distance 0 to every node (queue-based); raises on a negative cycle."""
    dist = dict.fromkeys(nodes, 0.0)
    hops = dict.fromkeys(nodes, 0)
    queue = deque(nodes)
    queued = set(nodes)
    limit = len(nodes) + 1
    while queue:
        u = queue.popleft()
        queued.discard(u)
        du = dist[u]
        for v, w in edges[u].items():
            if du + w < dist[v] - 1e-9:
                dist[v] = du + w
                hops[v] = hops[u] + 1
                if hops[v] > limit:
                    raise NegativeCycle()
                if v not in queued:
                    queued.add(v)
                    queue.append(v)
    return dist


def _components(nodes: list[Node], edges: dict[Node, dict[Node, float]], origins: set[Node]) -> dict[Node, int]:
    """Connected components of the graph without its origins (edge direction ignored)."""
    parent: dict[Node, Node] = {n: n for n in nodes if n not in origins}

    def find(x: Node) -> Node:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, targets in edges.items():
        if a in origins:
            continue
        for b in targets:
            if b not in origins:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[ra] = rb
    ids: dict[Node, int] = {}
    return {n: ids.setdefault(find(n), len(ids)) for n in parent}


def _floyd(members: list[Node], edges: dict[Node, dict[Node, float]]) -> dict[Node, dict[Node, float]]:
    inside = set(members)
    dist = {a: {b: (0.0 if a == b else INF) for b in members} for a in members}
    for a in members:
        for b, w in edges[a].items():
            if b in inside and w < dist[a][b]:
                dist[a][b] = w
    for k in members:
        row_k = dist[k]
        for a in members:
            via = dist[a][k]
            if via == INF:
                continue
            row_a = dist[a]
            for b, w in row_k.items():
                row_a[b] = min(row_a[b], via + w)
    return dist
