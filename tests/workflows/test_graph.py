from workflows.graph import ancestors, descendants, find_cycle, topological_order

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_order_ancestors_descendants():
    assert topological_order(DIAMOND) == ["a", "b", "c", "d"]
    assert ancestors(DIAMOND, "d") == {"a", "b", "c"}
    assert descendants(DIAMOND, ["b"]) == {"d"}
    assert descendants(DIAMOND, ["a"]) == {"b", "c", "d"}


def test_cycles_are_named():
    assert find_cycle(DIAMOND) is None
    cycle = find_cycle({"a": ["c"], "b": ["a"], "c": ["b"], "x": []})
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
