"""A sparse simple temporal network: tightest bounds without all-pairs shortest paths.

Constraints lo <= t(b) - t(a) <= hi are edges a->b (hi) and b->a (-lo). The shortest path d(a, b) bounds
t(b) - t(a) from above. Every path either passes through a frame origin or stays inside one component of
the graph without origins, so

    d(a, b) = min( min over origins o of d(a, o) + d(o, b),  d inside the component of a and b )

which is exact (the same as Floyd-Warshall) at the cost of one shortest-path tree per origin and direction
(Dijkstra on Johnson-reweighted edges) plus the small components, solved lazily when first asked.
Absolute times are edges to an origin, so they are fixed points the search starts from.

Internally a node is its position in `nodes` and every per-node table is a list: a node is a tuple of two
strings, and hashing it in each of the solver's dicts touched both strings of every node many times over,
so on a 10,000-resource history the working set outgrew the CPU cache and the cost grew faster than the
number of steps (measured with cachegrind: 10x the instructions but 39x the L2 misses, 1k -> 10k resources).
A node is hashed once, when it is looked up at the boundary.
"""
from __future__ import annotations

import heapq
import math
from collections import deque

INF = math.inf
Node = tuple[str, str]
Adjacency = list[list[tuple[int, float]]]
# Components up to this size are solved whole (Floyd-Warshall, s^3); larger ones one source at a time.
SMALL_COMPONENT = 24


class NegativeCycle(Exception):
    """The constraints contradict each other."""


class Network:
    def __init__(self, nodes: list[Node], edges: dict[Node, dict[Node, float]], origins: list[Node]):
        ids = {n: i for i, n in enumerate(nodes)}
        rows: list[dict[int, float]] = [{} for _ in nodes]
        for a, targets in edges.items():
            rows[ids[a]] = {ids[b]: w for b, w in targets.items()}
        self._build(nodes, ids, rows, origins)

    @classmethod
    def indexed(cls, nodes: list[Node], ids: dict[Node, int], rows: list[dict[int, float]],
                origins: list[Node]) -> Network:
        """The network of edges given by node position: rows[i][j] = w is the edge nodes[i] -> nodes[j]."""
        net = cls.__new__(cls)
        net._build(nodes, ids, rows, origins)
        return net

    def _build(self, nodes: list[Node], ids: dict[Node, int], rows: list[dict[int, float]], origins: list[Node]) -> None:
        self.nodes, self.origins, self.ids = nodes, origins, ids
        self._out: Adjacency = [list(row.items()) for row in rows]
        self._in: Adjacency = [[] for _ in nodes]
        for i, row in enumerate(self._out):
            for j, w in row:
                self._in[j].append((i, w))
        self.potential = _potentials(self._out)
        origin_ids = [ids[o] for o in origins]
        self._from = {o: self._tree(ids[o], self._out, True) for o in origins}
        self._to = {o: self._tree(ids[o], self._in, False) for o in origins}
        self._pairs = [(self._to[o], self._from[o]) for o in origins]
        self._component = _components(self._out, set(origin_ids))
        self._members: dict[int, list[int]] | None = None
        self._solved: dict[int, dict[int, dict[int, float]]] = {}

    def _tree(self, source: int, graph: Adjacency, forward: bool) -> list[float]:
        """d(source, v) (forward) or d(v, source) (backward) for every node, as one list."""
        found = [INF] * len(graph)
        for v, d in self._dijkstra(source, graph, forward).items():
            found[v] = d
        return found

    def _dijkstra(self, source: int, graph: Adjacency, forward: bool,
                  allowed: set[int] | None = None) -> dict[int, float]:
        """Shortest distances from `source` (to it, on the reversed graph), exact on reweighted edges."""
        h = self.potential
        sign = 1.0 if forward else -1.0
        dist: dict[int, float] = {source: 0.0}
        heap = [(0.0, source)]
        done = bytearray(len(graph))
        while heap:
            d, u = heapq.heappop(heap)
            if done[u]:
                continue
            done[u] = 1
            hu = h[u]
            for v, w in graph[u]:
                if allowed is not None and v not in allowed:
                    continue
                nd = d + w + sign * (hu - h[v])
                if nd < dist.get(v, INF) - 1e-12:
                    dist[v] = nd
                    heapq.heappush(heap, (nd, v))
        # Undo the reweighting: d_real(s, v) = d'(s, v) - h(s) + h(v) forward, mirrored backward.
        hs = h[source]
        return {v: d - sign * (hs - h[v]) for v, d in dist.items()}

    def distance(self, a: Node, b: Node) -> float:
        """d(a, b): the tightest upper bound on t(b) - t(a)."""
        if a == b:
            return 0.0
        ia, ib = self.ids.get(a), self.ids.get(b)
        if ia is None or ib is None:
            return INF
        best = INF
        for to, frm in self._pairs:
            best = min(best, to[ia] + frm[ib])
        comp = self._component[ia]
        if comp >= 0 and comp == self._component[ib]:
            best = min(best, self._inside(comp, ia, ib))
        return best

    def from_origin(self, origin: Node, node: Node) -> float:
        """d(origin, node): the latest possible time of `node` on the origin's frame (INF: unbounded)."""
        i = self.ids.get(node)
        return INF if i is None else self._from[origin][i]

    def to_origin(self, origin: Node, node: Node) -> float:
        """d(node, origin): minus the earliest possible time of `node` on the origin's frame."""
        i = self.ids.get(node)
        return INF if i is None else self._to[origin][i]

    def component(self, node: Node) -> int | None:
        i = self.ids.get(node)
        comp = -1 if i is None else self._component[i]
        return None if comp < 0 else comp

    def _inside(self, comp: int, a: int, b: int) -> float:
        table = self._solved.get(comp)
        if table is None:
            table = self._solved[comp] = {}
        if a not in table:
            members = self._of_component(comp)
            if len(members) <= SMALL_COMPONENT:
                table.update(_floyd(members, self._out))
            else:
                table[a] = self._dijkstra(a, self._out, True, allowed=set(members))
        return table[a].get(b, INF)

    def _of_component(self, comp: int) -> list[int]:
        if self._members is None:
            by: dict[int, list[int]] = {}
            for node, c in enumerate(self._component):
                if c >= 0:
                    by.setdefault(c, []).append(node)
            self._members = by
        return self._members[comp]


def _potentials(edges: Adjacency) -> list[float]:
    """Bellman-Ford from a virtual source at distance 0 to every node (queue-based); raises on a negative cycle."""
    n = len(edges)
    dist = [0.0] * n
    hops = [0] * n
    queue = deque(range(n))
    queued = bytearray(b"\x01" * n)
    limit = n + 1
    while queue:
        u = queue.popleft()
        queued[u] = 0
        du = dist[u]
        for v, w in edges[u]:
            if du + w < dist[v] - 1e-9:
                dist[v] = du + w
                hops[v] = hops[u] + 1
                if hops[v] > limit:
                    raise NegativeCycle()
                if not queued[v]:
                    queued[v] = 1
                    queue.append(v)
    return dist


def _components(edges: Adjacency, origins: set[int]) -> list[int]:
    """Connected components of the graph without its origins (edge direction ignored); -1 for an origin."""
    parent = list(range(len(edges)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, targets in enumerate(edges):
        if a in origins:
            continue
        for b, _ in targets:
            if b not in origins:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[ra] = rb
    ids: dict[int, int] = {}
    return [-1 if n in origins else ids.setdefault(find(n), len(ids)) for n in range(len(edges))]


def _floyd(members: list[int], edges: Adjacency) -> dict[int, dict[int, float]]:
    inside = set(members)
    dist = {a: {b: (0.0 if a == b else INF) for b in members} for a in members}
    for a in members:
        for b, w in edges[a]:
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
