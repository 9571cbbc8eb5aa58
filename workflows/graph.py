"""Pure graph functions over {step id: dependency ids}: cycles, order, ancestors, descendants."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

Graph = Mapping[str, Iterable[str]]


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle as a list of ids that starts and ends with the same id, or None when acyclic."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    for root in graph:
        if color[root] != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, list(graph[root]))]
        path = [root]
        color[root] = grey
        while stack:
            node, pending = stack[-1]
            if not pending:
                color[node] = black
                stack.pop()
                path.pop()
                continue
            nxt = pending.pop()
            if nxt not in color:
                continue  # an unknown id is reported elsewhere
            if color[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            if color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append((nxt, list(graph[nxt])))
    return None


def topological_order(graph: Graph) -> list[str]:
    """Every id after its dependencies; ties keep the graph's own order. The graph must be acyclic.

    Kahn's algorithm with a heap of positions: O((n + e) log n).
    """
    position = {node: index for index, node in enumerate(graph)}
    waiting = {node: sum(1 for dep in graph[node] if dep in position) for node in graph}
    reverse = dependents(graph)
    ready = [position[node] for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    nodes = list(graph)
    order: list[str] = []
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for child in reverse[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    if len(order) < len(nodes):
        raise ValueError(f"the graph has a cycle: {' -> '.join(find_cycle(graph) or nodes)}")
    return order


def ancestors(graph: Graph, node: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph.get(node, ()))
    while stack:
        current = stack.pop()
        if current in seen or current not in graph:
            continue
        seen.add(current)
        stack.extend(graph[current])
    return seen


def ancestor_sets(graph: Graph) -> dict[str, int]:
    """For each id, its ancestors as a bit set (bit i = the i-th id of the graph), in one pass.

    For an acyclic graph; linear in ids plus edges, each step an OR of machine-word-packed ints.
    """
    bit = {node: 1 << index for index, node in enumerate(graph)}
    found: dict[str, int] = {}
    for node in topological_order(graph):
        mask = 0
        for dep in graph[node]:
            if dep in bit:
                mask |= found[dep] | bit[dep]
        found[node] = mask
    return found


def dependents(graph: Graph) -> dict[str, list[str]]:
    """The reverse graph: for each id, the ids that depend on it directly, in the graph's order."""
    reverse: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in deps:
            if dep in reverse:
                reverse[dep].append(node)
    return reverse


def descendants(graph: Graph, nodes: Iterable[str]) -> set[str]:
    """Every id downstream of `nodes` (not including them)."""
    reverse = dependents(graph)
    seen: set[str] = set()
    stack = [child for node in nodes for child in reverse.get(node, ())]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(reverse[current])
    return seen
