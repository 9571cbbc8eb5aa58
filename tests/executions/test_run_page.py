"""The admin's run page: its graph's layout, what it renders, what it costs, and that it escapes."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from executions.models import RunEvent, StepRun
from executions.run_page import NODE_HEIGHT, NODE_WIDTH, layout
from executions.services import run_start
from tests.support.api import user_with
from tests.support.runs import steps, workflow
from workflows.definition import parse_definition

NOWHERE = {"queue": "nobody-reads-this"}
XSS = '<script>window.pwned = 1</script>"><img src=x onerror=alert(1)>'


def spec_of(*specs):
    return parse_definition(steps(*specs))


def step(step_id, *deps):
    return {"id": step_id, "action": "echo", "depends_on": list(deps)}


def test_a_steps_column_is_one_past_its_deepest_dependency_and_nothing_overlaps():
    drawn = layout(spec_of(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"), step("e", "a", "d")))
    at = {node.id: node for node in drawn.nodes}
    assert {s: at[s].column for s in at} == {"a": 0, "b": 1, "c": 1, "d": 2, "e": 3}
    assert (at["b"].row, at["c"].row) == (0, 1)
    boxes = [(n.x, n.y) for n in drawn.nodes]
    for i, (x1, y1) in enumerate(boxes):
        for x2, y2 in boxes[i + 1 :]:
            assert abs(x1 - x2) >= NODE_WIDTH or abs(y1 - y2) >= NODE_HEIGHT, "two nodes overlap"
    assert all(0 <= n.x and n.x + NODE_WIDTH <= drawn.width and n.y + NODE_HEIGHT <= drawn.height for n in drawn.nodes)
    assert sorted((e.source, e.target) for e in drawn.edges) == [
        ("a", "b"), ("a", "c"), ("a", "e"), ("b", "d"), ("c", "d"), ("d", "e"),
    ]  # fmt: skip


def test_a_column_follows_the_order_of_the_steps_it_depends_on_so_edges_do_not_cross():
    # x feeds q and y feeds p: p and q are placed in their parents' order, not the definition's.
    drawn = layout(spec_of(step("x"), step("y"), step("p", "y"), step("q", "x")))
    rows = {node.id: node.row for node in drawn.nodes}
    assert rows["x"] < rows["y"] and rows["q"] < rows["p"]


def test_a_long_chain_is_one_row_laid_out_in_linear_work():
    chain = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 1000)]
    drawn = layout(spec_of(*chain))
    assert {node.row for node in drawn.nodes} == {0} and max(node.column for node in drawn.nodes) == 999


@pytest.mark.django_db
def test_the_page_draws_every_step_with_its_status_and_escapes_what_authors_and_actions_wrote(admin_client):
    wf = workflow(
        steps(
            {"id": "fan", "action": "echo", "for_each": "{{ input.xs }}", "params": {"note": XSS}},
            {"id": "after", "action": "echo", "depends_on": ["fan"]},
            defaults=NOWHERE,
            name=XSS,
        ),
        slug="xss",
    )
    run, _ = run_start(workflow=wf, input={"xs": [1, 2, 3], "note": XSS})
    StepRun.objects.filter(run=run, step_id="fan", branch_index=0).update(
        status="failed", output={"html": XSS}, error_type="Boom", error_message=XSS, error_traceback=XSS
    )
    RunEvent.objects.create(run=run, step_id="fan", kind="step.failed", message=XSS, data={"status": "failed"})
    page = admin_client.get(reverse("admin:executions_run_change", args=[run.pk])).content.decode()
    nodes = re.findall(r'<g class="cf-node" data-step="([^"]+)" data-status="([^"]+)"', page)
    assert nodes == [("fan", "running"), ("after", "pending")]
    assert re.search(r'<text class="cf-node-progress"[^>]*>1 / 3, 1 failed</text>', page)  # a failed branch is done
    assert "<script>window.pwned" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.pwned" in page
    snapshot = re.search(r'<script id="cf-snapshot" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert "<" not in snapshot  # json_script escapes every < in the data it embeds
    panel = admin_client.get(reverse("admin:executions_run_step", args=[run.pk, "fan"])).content.decode()
    assert "<script>window.pwned" not in panel and "<img src=x" not in panel
    assert 'data-branch="0"' in panel and "Boom" in panel


@pytest.mark.django_db
def test_a_for_each_node_shows_done_and_failed_branches(admin_client):
    wf = workflow(steps({"id": "fan", "action": "echo", "for_each": "{{ input.xs }}"}, defaults=NOWHERE))
    run, _ = run_start(workflow=wf, input={"xs": list(range(1000))})
    branches = StepRun.objects.filter(run=run, step_id="fan", branch_index__isnull=False)
    branches.filter(branch_index__lt=809).update(status="succeeded")
    branches.filter(branch_index__gte=809, branch_index__lt=812).update(status="failed")
    page = admin_client.get(reverse("admin:executions_run_change", args=[run.pk])).content.decode()
    assert "812 / 1,000, 3 failed" in page
    progress = admin_client.get(reverse("admin:executions_run_progress", args=[run.pk])).json()
    assert progress["steps"]["fan"]["branches"] == {
        "count": 1000, "by_status": {"succeeded": 809, "failed": 3, "queued": 188},
    }  # fmt: skip


@pytest.mark.django_db
def test_the_page_costs_the_same_queries_for_ten_branches_as_for_a_thousand(admin_client):
    wf = workflow(steps({"id": "fan", "action": "echo", "for_each": "{{ input.xs }}"}, defaults=NOWHERE))
    costs = []
    for width in (10, 1000):
        run, _ = run_start(workflow=wf, input={"xs": list(range(width))})
        urls = [
            reverse("admin:executions_run_change", args=[run.pk]),
            reverse("admin:executions_run_progress", args=[run.pk]),
            reverse("admin:executions_run_step", args=[run.pk, "fan"]) + "?page=3",
        ]
        admin_client.get(urls[0])  # warm: the version's parsed spec is cached per process
        with CaptureQueriesContext(connection) as queries:
            for url in urls:
                assert admin_client.get(url).status_code == 200
        costs.append(len(queries))
    assert costs[0] == costs[1]


@pytest.mark.django_db
def test_the_page_parts_need_view_permission_and_a_real_step(client, admin_client):
    wf = workflow(steps({"id": "a", "action": "echo"}, defaults=NOWHERE))
    run, _ = run_start(workflow=wf)
    assert admin_client.get(reverse("admin:executions_run_step", args=[run.pk, "ghost"])).status_code == 404
    assert admin_client.get(reverse("admin:executions_run_step", args=[run.pk, "a"]) + "?page=x").status_code == 200
    stranger = user_with()
    stranger.is_staff = True
    stranger.save()
    client.force_login(stranger)
    for name in ("admin:executions_run_progress", "admin:executions_run_change"):
        assert client.get(reverse(name, args=[run.pk])).status_code in (403, 404)
