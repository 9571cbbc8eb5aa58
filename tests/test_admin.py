"""The admin: every page loads, edits validate as the API does, start/cancel/retry work."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from executions.models import Run, RunEvent, StepRun
from executions.services import run_start
from executions.states import RunStatus
from tests.support.runs import steps, workflow
from workflows.models import Workflow

pytestmark = pytest.mark.django_db
NOWHERE = {"queue": "nobody-reads-this"}


@pytest.fixture
def wf():
    return workflow(
        steps(
            {"id": "a", "action": "echo"},
            {"id": "m", "action": "echo", "depends_on": ["a"], "for_each": "{{ input.xs }}"},
            defaults=NOWHERE,
            input_schema={"type": "object", "required": ["xs"]},
        ),
        slug="adm",
    )


def test_every_page_loads(admin_client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    step = StepRun.objects.filter(run=run).first()
    version = wf.versions.get()
    for url in [
        reverse("admin:workflows_workflow_changelist"),
        reverse("admin:workflows_workflow_add"),
        reverse("admin:workflows_workflow_change", args=[wf.pk]),
        reverse("admin:workflows_workflow_start", args=[wf.pk]),
        reverse("admin:workflows_workflowversion_changelist"),
        reverse("admin:workflows_workflowversion_change", args=[version.pk]),
        reverse("admin:executions_run_changelist"),
        reverse("admin:executions_run_changelist") + "?status__exact=running",
        reverse("admin:executions_run_changelist") + f"?q={run.pk}",
        reverse("admin:executions_run_changelist") + "?q=not-an-id",
        reverse("admin:executions_run_change", args=[run.pk]),
        reverse("admin:executions_steprun_changelist") + "?status__exact=queued&step_id=a",
        reverse("admin:executions_steprun_change", args=[step.pk]),
    ]:
        response = admin_client.get(url)
        assert response.status_code == 200, url


def test_run_pages_do_not_query_per_row(admin_client, wf):
    run_start(workflow=wf, input={"xs": [1]})
    url = reverse("admin:executions_run_changelist")
    with CaptureQueriesContext(connection) as one:
        admin_client.get(url)
    for _ in range(5):
        run_start(workflow=wf, input={"xs": [1]})
    with CaptureQueriesContext(connection) as six:
        admin_client.get(url)
    assert len(one) == len(six)
    steps_url = reverse("admin:executions_steprun_changelist")
    with CaptureQueriesContext(connection) as step_list:
        admin_client.get(steps_url)
    assert len(step_list) < 15


def test_editing_a_definition_validates_like_the_api_and_makes_versions(admin_client, wf):
    url = reverse("admin:workflows_workflow_change", args=[wf.pk])
    bad = admin_client.post(
        url, {"active": "on", "definition": "name: x\nsteps:\n  - id: a\n    action: nope\n", **inline_management()}
    )
    assert bad.status_code == 200
    assert "steps[0].action: unknown action &#x27;nope&#x27;" in bad.content.decode()
    assert wf.versions.count() == 1
    good = yaml.safe_dump(steps({"id": "b", "action": "echo"}))
    saved = admin_client.post(url, {"active": "on", "definition": good, **inline_management()})
    assert saved.status_code == 302
    assert wf.versions.count() == 2


def test_adding_a_workflow(admin_client):
    definition = yaml.safe_dump(steps({"id": "a", "action": "echo"}, name="Added"))
    response = admin_client.post(
        reverse("admin:workflows_workflow_add"),
        {"slug": "added", "active": "on", "definition": definition, **inline_management()},
    )
    assert response.status_code == 302
    assert Workflow.objects.get(slug="added").name == "Added"


def test_start_cancel_and_retry_from_the_admin(admin_client, wf):
    start = reverse("admin:workflows_workflow_start", args=[wf.pk])
    refused = admin_client.post(start, {"input": '{"ys": 1}'})
    assert "input: &#x27;xs&#x27; is a required property" in refused.content.decode()
    assert admin_client.post(start, {"input": "{not json"}).status_code == 200
    assert not Run.objects.exists()
    started = admin_client.post(start, {"input": '{"xs": [1, 2]}'})
    run = Run.objects.get()
    assert started.status_code == 302 and started.url == reverse("admin:executions_run_change", args=[run.pk])

    changelist = reverse("admin:executions_run_changelist")
    cancel = {"action": "cancel_runs", "_selected_action": [run.pk], "post": "yes"}
    admin_client.post(changelist, cancel)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    response = admin_client.post(changelist, cancel, follow=True)
    assert "only pending, running or waiting runs can be cancelled" in response.content.decode()
    admin_client.post(changelist, {"action": "retry_runs", "_selected_action": [run.pk]})
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_cancelling_from_the_admin_asks_for_confirmation_first(admin_client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    changelist = reverse("admin:executions_run_changelist")
    asked = admin_client.post(changelist, {"action": "cancel_runs", "_selected_action": [run.pk]})
    page = asked.content.decode()
    assert asked.status_code == 200 and "Cancel 1 run?" in page and str(run.pk) in page
    assert 'name="post" value="yes"' in page and f'name="_selected_action" value="{run.pk}"' in page
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING  # nothing happens until the page is confirmed
    # "No, take me back" goes only to a page of this site, never to a posted javascript: or foreign URL
    for evil in ("javascript:alert(document.cookie)", "https://evil.example/phish"):
        back = admin_client.post(changelist, {"action": "cancel_runs", "_selected_action": [run.pk], "next": evil})
        assert (
            evil not in back.content.decode()
            and f'href="{changelist}" class="button cancel-link"' in back.content.decode()
        )

    confirmed = admin_client.post(changelist, {"action": "cancel_runs", "_selected_action": [run.pk], "post": "yes"})
    assert confirmed.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_status_cannot_be_edited_by_hand(admin_client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    page = admin_client.get(reverse("admin:executions_run_change", args=[run.pk])).content.decode()
    assert 'name="status"' not in page
    assert admin_client.get(reverse("admin:executions_run_add")).status_code == 403


def inline_management() -> dict:
    """The management forms of the workflow page's inlines (versions, schedules), as a browser sends them."""
    return {
        f"{prefix}-{key}": value
        for prefix in ("versions", "schedules")
        for key, value in (
            ("TOTAL_FORMS", "0"),
            ("INITIAL_FORMS", "0"),
            ("MIN_NUM_FORMS", "0"),
            ("MAX_NUM_FORMS", "1000"),
        )
    }


def test_the_date_hierarchy_lists_days_between_the_first_and_last_run(admin_client, wf):
    first, _ = run_start(workflow=wf, input={"xs": [1]})
    last, _ = run_start(workflow=wf, input={"xs": [1]})
    start = datetime(2026, 3, 10, 12, tzinfo=UTC)
    Run.objects.filter(pk=first.pk).update(created_at=start)
    Run.objects.filter(pk=last.pk).update(created_at=start + timedelta(days=3))
    changelist = reverse("admin:executions_run_changelist")
    page = admin_client.get(changelist).content.decode()  # one month: Django drills down to days
    for day in ("March 10", "March 11", "March 12", "March 13"):
        assert day in page
    day = admin_client.get(changelist + "?created_at__year=2026&created_at__month=3&created_at__day=13")
    assert day.status_code == 200 and str(last.pk)[:8] in day.content.decode()
    assert str(first.pk)[:8] not in day.content.decode()


def test_a_run_is_named_by_its_workflow_slug(wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    assert str(run) == f"adm run {run.pk}"


def test_searching_runs_by_the_short_id_the_list_shows(admin_client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    other, _ = run_start(workflow=wf, input={"xs": [1]})
    while str(other.pk)[:8] == str(run.pk)[:8]:  # pragma: no cover (1 in 4 billion)
        other, _ = run_start(workflow=wf, input={"xs": [1]})
    changelist = reverse("admin:executions_run_changelist")
    for term in (str(run.pk)[:8], str(run.pk)[:13].upper(), f" {run.pk} ", str(run.pk).replace("-", "")):
        page = admin_client.get(changelist, {"q": term}).content.decode()
        assert f">{str(run.pk)[:8]}<" in page, term
        assert f">{str(other.pk)[:8]}<" not in page, term
    assert ">0 runs<" in admin_client.get(changelist, {"q": "zz-not-hex"}).content.decode().replace("\n", "")


def test_the_run_page_cancels_after_confirmation_and_retries(admin_client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    page_url = reverse("admin:executions_run_change", args=[run.pk])
    page = admin_client.get(page_url).content.decode()
    changelist = reverse("admin:executions_run_changelist")
    assert f'<form method="post" action="{changelist}"' in page and "csrfmiddlewaretoken" in page
    assert 'value="cancel_runs"' in page and 'value="retry_runs"' not in page  # retry: failed or cancelled runs
    cancel = {"action": "cancel_runs", "_selected_action": run.pk, "next": page_url}
    confirm = admin_client.post(changelist, cancel)
    assert "Cancel 1 run?" in confirm.content.decode() and f'name="next" value="{page_url}"' in confirm.content.decode()
    done = admin_client.post(changelist, {**cancel, "post": "yes"})
    assert done.status_code == 302 and done.url == page_url
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    page = admin_client.get(page_url).content.decode()
    assert "1 run(s) cancelled." in page and 'value="retry_runs"' in page and 'value="cancel_runs"' not in page
    retried = admin_client.post(changelist, {"action": "retry_runs", "_selected_action": run.pk, "next": page_url})
    assert retried.status_code == 302 and retried.url == page_url
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    elsewhere = {"action": "retry_runs", "_selected_action": run.pk, "next": "https://evil.example/"}
    assert admin_client.post(changelist, elsewhere).url != "https://evil.example/"


def test_the_run_buttons_need_the_csrf_token(admin_user, wf):
    from django.test import Client

    run, _ = run_start(workflow=wf, input={"xs": [1]})
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    changelist = reverse("admin:executions_run_changelist")
    refused = client.post(changelist, {"action": "cancel_runs", "_selected_action": run.pk, "post": "yes"})
    assert refused.status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_the_run_page_shows_step_times_to_the_millisecond_durations_and_outputs(admin_client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    start = datetime(2026, 3, 10, 12, 0, 1, 250_000, tzinfo=UTC)
    StepRun.objects.filter(run=run, step_id="a").update(
        started_at=start,
        finished_at=start + timedelta(seconds=2, milliseconds=5),
        output={"said": "<script>x</script>"},
    )
    step = StepRun.objects.get(run=run, step_id="a")
    page = admin_client.get(reverse("admin:executions_run_change", args=[run.pk])).content.decode()
    assert "12:00:01.250" in page and "2.005 s" in page
    assert reverse("admin:executions_steprun_change", args=[step.pk]) in page
    assert "&lt;script&gt;" in page and "<script>x" not in page


def test_the_run_page_shows_the_latest_events_and_links_to_all(admin_client, client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    before = RunEvent.objects.filter(run=run).count()
    RunEvent.objects.bulk_create(RunEvent(run=run, kind="test.event", message=f"event #{i:03}") for i in range(300))
    RunEvent.objects.create(run=run, kind="run.failed", message="how it <b>ended</b>")
    page = admin_client.get(reverse("admin:executions_run_change", args=[run.pk])).content.decode()
    assert "how it &lt;b&gt;ended&lt;/b&gt;" in page and "event #299" in page and "event #000" not in page
    assert f"the latest 200 of {before + 301}" in page
    all_events = reverse("admin:executions_runevent_changelist") + f"?run={run.pk}"
    assert all_events in page.replace("&amp;", "&")
    listed = admin_client.get(all_events, {"all": ""}).content.decode()
    assert "event #000" in listed and "how it &lt;b&gt;ended" in listed

    # The kinds to filter by come from the code, not from a DISTINCT over every event of every run.
    with CaptureQueriesContext(connection) as queries:
        failed = admin_client.get(all_events, {"kind": "run.failed"}).content.decode()
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]
    assert "how it &lt;b&gt;ended" in failed and "event #000" not in failed and "step.succeeded" in failed
    # Whoever may view runs may read their events: the run page links them there.
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(viewer)
    assert client.get(all_events).status_code == 200


def test_step_runs_filter_by_run_and_the_run_links_to_its_branches(admin_client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    other, _ = run_start(workflow=wf, input={"xs": [1]})
    parent = StepRun.objects.get(run=run, step_id="m")
    StepRun.objects.filter(pk=parent.pk).update(branch_count=2)
    for index in range(2):
        StepRun.objects.create(run=run, step_id="m", parent=parent, branch_index=index)
    StepRun.objects.create(run=other, step_id="m", parent=StepRun.objects.get(run=other, step_id="m"), branch_index=0)
    page = admin_client.get(reverse("admin:executions_run_change", args=[run.pk])).content.decode()
    branches = reverse("admin:executions_steprun_changelist") + f"?run={run.pk}&step_id=m"
    assert branches in page.replace("&amp;", "&")
    listed = admin_client.get(branches).content.decode()
    assert listed.count(reverse("admin:executions_run_change", args=[run.pk])) == 3  # the parent and 2 branches
    assert reverse("admin:executions_run_change", args=[other.pk]) not in listed
    assert admin_client.get(reverse("admin:executions_steprun_changelist"), {"run": "nonsense"}).status_code == 200


def test_large_json_is_collapsed_with_its_size_and_a_preview(admin_client, wf):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    big = [{"branch": i, "note": "<script>alert(1)</script>"} for i in range(2000)]
    StepRun.objects.filter(run=run, step_id="a").update(output=big)
    step = StepRun.objects.get(run=run, step_id="a")
    page = admin_client.get(reverse("admin:executions_steprun_change", args=[step.pk])).content.decode()
    summary = page.split("<summary>")[1].split("</summary>")[0].replace("&quot;", '"')
    assert "list of 2,000 items" in summary and '"branch": 0' in summary and "<details" in page
    assert "<script>alert" not in page
    small = admin_client.get(reverse("admin:executions_run_change", args=[run.pk])).content.decode()
    assert "&quot;xs&quot;" in small and "<details" not in small.split("input")[1].split("</pre>")[0]


def test_a_step_page_links_to_its_task_in_flower(admin_client, wf, settings):
    run, _ = run_start(workflow=wf, input={"xs": [1]})
    step = StepRun.objects.get(run=run, step_id="a")
    url = reverse("admin:executions_steprun_change", args=[step.pk])
    settings.CHORDFLOW_FLOWER_URL = "http://flower.example:5555/"
    assert f'href="http://flower.example:5555/task/{step.task_id}"' in admin_client.get(url).content.decode()
    settings.CHORDFLOW_FLOWER_URL = ""
    page = admin_client.get(url).content.decode()
    assert step.task_id in page and "/task/" not in page


def test_the_admin_index_links_to_flower_and_its_queues_only_when_flower_is_set(admin_client, settings):
    settings.CHORDFLOW_FLOWER_URL = "https://flower.example/"
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert 'href="https://flower.example/"' in index and 'href="https://flower.example/broker"' in index
    settings.CHORDFLOW_FLOWER_URL = ""
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert "flower" not in index.lower()


def test_the_start_form_shows_the_schema_and_is_prefilled_with_the_example_input(admin_client):
    definition = steps(
        {"id": "a", "action": "echo"},
        input_schema={"type": "object", "required": ["xs"], "properties": {"xs": {"description": "<b>numbers</b>"}}},
        example_input={"xs": [1, 2, 3]},
    )
    start = reverse("admin:workflows_workflow_start", args=[workflow(definition, slug="ex").pk])
    page = admin_client.get(start).content.decode()
    assert "&lt;b&gt;numbers&lt;/b&gt;" in page and "<b>numbers" not in page  # the schema, escaped
    assert "{\n  &quot;xs&quot;: [\n    1," in page  # the form's initial input
    admin_client.post(start, {"input": '{"xs": [1, 2, 3]}'})
    assert Run.objects.get().input == {"xs": [1, 2, 3]}
