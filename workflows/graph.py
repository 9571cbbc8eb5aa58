"""Pure graph functions over {step id: dependency ids}: cycles, order, ancestors, descendants."""

from __future__ import annotations

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
    """Every id after its dependencies; ties keep the graph's own order. The graph must be acyclic."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(graph)
    while remaining:
        progress = [node for node in remaining if all(dep in placed for dep in graph[node])]
        if not progress:
            raise ValueError(f"the graph has a cycle: {' -> '.join(find_cycle(graph) or remaining)}")
        for node in progress:
            placed.add(node)
            order.append(node)
        remaining = [node for node in remaining if node not in placed]
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


def dependents(graph: Graph) -> dict[str, set[str]]:
    """The reverse graph: for each id, the ids that depend on it directly."""
    reverse: dict[str, set[str]] = {node: set() for node in graph}
    for node, deps in graph.items():
        for dep in deps:
            if dep in reverse:
                reverse[dep].add(node)
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
