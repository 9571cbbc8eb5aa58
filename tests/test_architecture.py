"""Dependencies point one way (approvals -> executions -> workflows) and the runtime has no import cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("workflows", "executions", "approvals")


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def modules(app: str) -> dict[str, Path]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): path
        for path in (ROOT / app).rglob("*.py")
        if "migrations" not in path.parts and "benchmark" not in path.parts
    }


@pytest.mark.parametrize(
    ("app", "forbidden"), [("workflows", ("executions", "approvals")), ("executions", ("approvals",))]
)
def test_an_app_never_imports_the_apps_built_on_it(app, forbidden):
    offending = {
        name: sorted(i for i in imports(path) if i.split(".")[0] in forbidden) for name, path in modules(app).items()
    }
    assert {name: found for name, found in offending.items() if found} == {}


def test_run_views_read_workflows_through_selectors_not_views():
    assert not {i for i in imports(ROOT / "executions/views.py") if i.startswith("workflows.views")}


def test_the_runtime_modules_import_each_other_without_a_cycle():
    graph = {
        name: {i for i in imports(path) if i in modules("executions")} - {name}
        for name, path in modules("executions").items()
    }
    visiting, done, cycles = set(), set(), []

    def visit(node, trail):
        if node in visiting:
            cycles.append([*trail[trail.index(node) :], node])
            return
        if node in done:
            return
        visiting.add(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    assert cycles == []
