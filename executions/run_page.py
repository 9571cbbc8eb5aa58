"""The admin's live run page: the run's graph laid out in Python, and the snapshot its script starts from.

The layout is layered: a step's column is one more than its deepest dependency's (longest path from
the roots, in topological order), and within a column steps are ordered by the mean row of their
dependencies, then by their place in the definition. Linear in steps and edges; no JS library.

Everything here reads a bounded number of rows whatever the run's width: branch counts come from one
aggregate query, events from the latest EVENTS_SHOWN of the run's step-level events.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count
from django.urls import reverse

from executions.models import Run, RunEvent, StepRun
from executions.states import RunStatus, StepStatus
from workflows import graph
from workflows.services import version_spec
from workflows.spec import WorkflowSpec

NODE_WIDTH, NODE_HEIGHT = 160, 66
COLUMN_GAP, ROW_GAP, MARGIN = 44, 18, 12
FIT_WIDTH = 1500  # a graph up to this wide shrinks to the page's width; a wider one scrolls
LABEL_CHARS = 20
TIMELINE_EVENTS = 2000  # step-level events the timeline starts from (attempts of every step)

# One palette for the graph, the timeline and the lists' status labels (executions/admin.py `colored`).
# Readable on the admin's light and dark backgrounds; queued, running, retrying and waiting distinct.
PALETTE = {
    StepStatus.PENDING: "#8a8f98",
    StepStatus.QUEUED: "#6aa6e8",
    StepStatus.RUNNING: "#1f6fd1",
    StepStatus.RETRYING: "#e68a00",
    StepStatus.WAITING: "#9467bd",
    StepStatus.SUCCEEDED: "#2e9e3e",
    StepStatus.FAILED: "#d62728",
    StepStatus.SKIPPED: "#17a2b8",
    StepStatus.CANCELLED: "#6c7480",
}


@dataclass(frozen=True)
class Node:
    id: str
    label: str
    column: int
    row: int
    x: int
    y: int
    type: str
    for_each: bool


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str


@dataclass(frozen=True)
class Layout:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def layout(spec: WorkflowSpec) -> Layout:
    dependencies = spec.dependencies
    order = graph.topological_order(dependencies)
    position = {step.id: index for index, step in enumerate(spec.steps)}
    column: dict[str, int] = {}
    for step_id in order:
        column[step_id] = 1 + max((column[dep] for dep in dependencies[step_id]), default=-1)
    columns: dict[int, list[str]] = defaultdict(list)
    for step_id in order:
        columns[column[step_id]].append(step_id)
    row: dict[str, int] = {}
    for index in sorted(columns):
        members = columns[index]

        def barycenter(step_id: str) -> tuple[float, int]:
            rows = [row[dep] for dep in dependencies[step_id]]
            return (sum(rows) / len(rows) if rows else position[step_id], position[step_id])

        for place, step_id in enumerate(sorted(members, key=barycenter)):
            row[step_id] = place
    tallest = max((len(members) for members in columns.values()), default=0)
    nodes = []
    for step in spec.steps:
        # Columns are centred vertically, so a chain and a diamond read as one line of flow.
        offset = (tallest - len(columns[column[step.id]])) * (NODE_HEIGHT + ROW_GAP) / 2
        x = MARGIN + column[step.id] * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN + round(offset) + row[step.id] * (NODE_HEIGHT + ROW_GAP)
        label = step.id if len(step.id) <= LABEL_CHARS else step.id[: LABEL_CHARS - 1] + "…"
        nodes.append(Node(step.id, label, column[step.id], row[step.id], x, y, step.type, step.for_each is not None))
    at = {node.id: node for node in nodes}
    edges = []
    for step in spec.steps:
        for dep in step.depends_on:
            source, target = at[dep], at[step.id]
            x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2
            x2, y2 = target.x, target.y + NODE_HEIGHT // 2
            bend = (x2 - x1) / 2
            edges.append(Edge(dep, step.id, f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"))
    width = MARGIN * 2 + (max(column.values(), default=0) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    return Layout(nodes, edges, max(width, NODE_WIDTH), max(height, NODE_HEIGHT))


def step_states(run: Run) -> dict[str, dict]:
    """Each step's status, attempts, times and branch counts: two queries, whatever the run's width."""
    steps = {}
    rows = StepRun.objects.filter(run=run, branch_index__isnull=True).only(
        "step_id", "status", "attempts", "queued_at", "started_at", "finished_at", "branch_count", "error_type"
    )
    for row in rows:
        steps[row.step_id] = {
            "status": row.status,
            "attempts": row.attempts,
            "queued_at": iso(row.queued_at),
            "started_at": iso(row.started_at),
            "finished_at": iso(row.finished_at),
            "error": row.error_type or None,
            "branches": None if row.branch_count is None else {"count": row.branch_count, "by_status": {}},
        }
    counts = (
        StepRun.objects.filter(run=run, branch_index__isnull=False).values("step_id", "status").annotate(n=Count("id"))
    )
    for count in counts:
        branches = steps.get(count["step_id"], {}).get("branches")
        if branches is not None:
            branches["by_status"][count["status"]] = count["n"]
    return steps


def run_state(run: Run) -> dict:
    return {
        "id": str(run.pk),
        "status": run.status,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "finished": run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED),
    }


def latest_event(run: Run) -> int:
    return RunEvent.objects.filter(run=run).order_by("-id").values_list("id", flat=True).first() or 0


def snapshot(run: Run, steps: dict[str, dict] | None = None, latest: int | None = None) -> dict:
    """What the page's script starts from: the run, its steps, and its step-level events (the timeline's
    attempts), plus the id of the run's latest event, from which it catches up."""
    step_events = RunEvent.objects.filter(run=run, branch_index__isnull=True).exclude(step_id="").order_by("-id")
    events = [
        {"id": e.id, "type": e.kind, "step": e.step_id, "at": iso(e.created_at), "attempt": e.data.get("attempt")}
        for e in reversed(step_events[:TIMELINE_EVENTS])
    ]
    latest = latest_event(run) if latest is None else latest
    return {
        "run": run_state(run),
        "steps": step_states(run) if steps is None else steps,
        "events": events,
        "last_event": latest,
        "urls": {
            "progress": reverse("admin:executions_run_progress", args=[run.pk]),
            "step": reverse("admin:executions_run_step", args=[run.pk, "__step__"]),
        },
    }


def page_context(run: Run) -> dict:
    """The graph to draw and the live script's snapshot, from one read of the steps.

    The newest event id is read first, then the statuses: an event committing in between is then
    both in the statuses and after the cursor the page catches up from, never lost between them."""
    latest = latest_event(run)
    run.refresh_from_db(fields=["status", "started_at", "finished_at"])
    spec = version_spec(run.version)
    drawn = layout(spec)
    steps = step_states(run)
    nodes = []
    for node in drawn.nodes:
        state = steps.get(node.id) or {"status": StepStatus.PENDING, "attempts": 0, "branches": None}
        nodes.append({"node": node, "state": state, "progress": progress(state.get("branches"))})
    return {
        "graph": drawn,
        "graph_fits": drawn.width <= FIT_WIDTH,
        "graph_nodes": nodes,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
        "palette": PALETTE,
        "live": snapshot(run, steps, latest),
    }


def progress(branches: dict | None) -> dict | None:
    """ "812 / 1,000, 3 failed" and the bar's fraction, for a for_each step."""
    if branches is None:
        return None
    by_status = branches["by_status"]
    total = branches["count"]
    done = sum(by_status.get(s, 0) for s in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED))
    done += by_status.get(StepStatus.CANCELLED, 0)
    failed = by_status.get(StepStatus.FAILED, 0)
    text = f"{done:,} / {total:,}" + (f", {failed:,} failed" if failed else "")
    fraction = done / total if total else 1.0
    return {"text": text, "fraction": fraction, "width": round((NODE_WIDTH - 20) * fraction)}


def iso(moment) -> str | None:
    return moment.isoformat() if moment is not None else None
