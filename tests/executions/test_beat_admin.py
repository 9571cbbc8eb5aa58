"""The admin leaves the engine's periodic tasks alone and hides Celery's always-empty result pages."""

import pytest
from django.urls import NoReverseMatch, reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

pytestmark = pytest.mark.django_db


@pytest.fixture
def sweep():
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name="chordflow-sweep", task="executions.sweep", interval=every)


@pytest.fixture
def mine():
    every = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name="my report", task="executions.sweep", interval=every)


def test_the_engines_periodic_tasks_are_read_only_with_a_warning(admin_client, sweep, mine):
    page = admin_client.get(reverse("admin:django_celery_beat_periodictask_change", args=[sweep.pk]))
    text = page.content.decode()
    assert page.status_code == 200 and "the engine&#x27;s own" in text and "self-healing" in text
    assert 'name="_save"' not in text
    refused = admin_client.post(
        reverse("admin:django_celery_beat_periodictask_change", args=[sweep.pk]), {"name": sweep.name, "enabled": ""}
    )
    assert refused.status_code == 403
    changelist = reverse("admin:django_celery_beat_periodictask_changelist")
    for action in ("disable_tasks", "toggle_tasks"):
        done = admin_client.post(changelist, {"action": action, "_selected_action": [sweep.pk, mine.pk]}, follow=True)
        assert "chordflow-sweep" in done.content.decode()
        sweep.refresh_from_db()
        assert sweep.enabled
    mine.refresh_from_db()
    assert mine.enabled  # disabled, then toggled back
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [sweep.pk], "post": "yes"})
    assert PeriodicTask.objects.filter(pk=sweep.pk).exists()
    mine_page = admin_client.get(reverse("admin:django_celery_beat_periodictask_change", args=[mine.pk]))
    assert 'name="_save"' in mine_page.content.decode()


def test_celerys_empty_result_pages_are_not_in_the_admin(admin_client):
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert "Task results" not in index and "Group results" not in index
    with pytest.raises(NoReverseMatch):
        reverse("admin:django_celery_results_taskresult_changelist")


def test_the_add_workflow_page_shows_only_what_one_can_fill(admin_client):
    page = admin_client.get(reverse("admin:workflows_workflow_add")).content.decode()
    assert 'name="slug"' in page and 'name="definition"' in page and 'name="active"' in page
    assert "Current definition" not in page and "field-name" not in page and "field-description" not in page
