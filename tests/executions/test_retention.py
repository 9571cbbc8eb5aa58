"""Retention: the purge_runs command and the beat task delete exactly the finished runs past the cut-off."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_celery_results.models import TaskResult

from approvals.models import Approval, Decision
from config.celery_app import app
from executions.dispatch import PURGE_RUNS
from executions.models import Run, RunEvent, Schedule, ScheduleFire, StepRun
from executions.services import run_start
from executions.states import RunStatus
from tests.support.runs import steps, wait_until, workflow
from workflows.definition import parse_definition
from workflows.exceptions import DefinitionError

pytestmark = pytest.mark.django_db(transaction=True)
NOWHERE = {"queue": "nobody-reads-this"}


def aged(wf, *, days: float, status=RunStatus.SUCCEEDED) -> Run:
    run, _ = run_start(workflow=wf, input={"xs": [1, 2]})
    moment = timezone.now() - timedelta(days=days)
    finished = moment if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED) else None
    Run.objects.filter(pk=run.pk).update(status=status, created_at=moment, finished_at=finished)
    return run


@pytest.fixture
def fleet():
    shop = workflow(
        steps(
            {"id": "ok", "type": "approval", "params": {"approvers": {"users": ["nobody"]}}},
            {"id": "fan", "action": "echo", "for_each": "{{ input.xs }}"},
            defaults=NOWHERE,
        ),
        slug="shop",
    )
    etl = workflow(steps({"id": "load", "action": "echo"}, defaults=NOWHERE, retention_days=7), slug="etl")
    runs = {
        "shop-old": aged(shop, days=40),
        "shop-mid": aged(shop, days=20, status=RunStatus.FAILED),
        "shop-new": aged(shop, days=1),
        "shop-old-running": aged(shop, days=400, status=RunStatus.RUNNING),
        "etl-old": aged(etl, days=8, status=RunStatus.CANCELLED),
        "etl-new": aged(etl, days=6),
    }
    approval = Approval.objects.get(run=runs["shop-old"])
    Decision.objects.create(approval=approval, decision="approve", comment="fine")
    schedule = Schedule.objects.create(workflow=shop, name="nightly", cron="@daily")
    ScheduleFire.objects.create(schedule=schedule, nominal_time=timezone.now(), outcome="started", run=runs["shop-old"])
    return runs


def left(runs) -> set[str]:
    kept = set(map(str, Run.objects.values_list("pk", flat=True)))
    return {name for name, run in runs.items() if str(run.pk) in kept}


def purge(*args) -> str:
    out = StringIO()
    call_command("purge_runs", *args, stdout=out)
    return out.getvalue()


def test_a_dry_run_says_what_would_go_and_deletes_nothing(fleet):
    assert purge("--older-than", "10", "--dry-run").splitlines() == [
        "shop: would delete 2 runs",
        "would delete 2 finished runs older than 10 days",
    ]
    assert left(fleet) == set(fleet)


def test_the_command_deletes_the_finished_runs_past_the_cut_off_with_everything_kept_for_them(fleet):
    assert purge("--older-than", "10", "--workflow", "shop").splitlines() == [
        "shop: deleted 2 runs",
        "deleted 2 finished runs older than 10 days",
    ]
    assert left(fleet) == {"shop-new", "shop-old-running", "etl-old", "etl-new"}
    gone = [fleet["shop-old"].pk, fleet["shop-mid"].pk]
    for model in (StepRun, RunEvent, Approval):
        assert not model.objects.filter(run_id__in=gone).exists(), model
    assert not Decision.objects.exists()
    assert ScheduleFire.objects.get().run is None  # the fire's record stays, without its run
    assert StepRun.objects.filter(run=fleet["shop-new"]).count() == 4  # two steps, two branches
    # --older-than 0: every finished run; the unfinished one stays however old it is
    assert "deleted 3 finished runs older than 0 days" in purge("--older-than", "0")
    assert left(fleet) == {"shop-old-running"}


def test_the_beat_task_follows_each_workflows_retention_on_the_worker(fleet, celery_worker):
    TaskResult.objects.create(task_id="old", status="SUCCESS", date_done=timezone.now())
    TaskResult.objects.filter(task_id="old").update(date_done=timezone.now() - timedelta(days=31))
    TaskResult.objects.create(task_id="new", status="SUCCESS")
    app.send_task(PURGE_RUNS)
    wait_until(lambda: "shop-old" not in left(fleet), what="the purge on the worker")
    celery_worker.wait_idle(timeout=20)
    # shop keeps 30 days (the setting), etl 7 (its retention_days)
    assert left(fleet) == {"shop-mid", "shop-new", "shop-old-running", "etl-new"}
    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["new"]


def test_mistakes_are_clear_errors(fleet):
    for args, message in [
        (["--older-than", "-1"], "--older-than takes 0 or more days, not -1"),
        (["--older-than", "soon"], "--older-than takes a whole number of days, not 'soon'"),
        (["--older-than", "1", "--workflow", "ghost"], "no workflow with slug 'ghost'"),
    ]:
        with pytest.raises(CommandError, match=message):
            purge(*args)
    assert left(fleet) == set(fleet)
    with pytest.raises(DefinitionError, match="retention_days: must be a whole number of days"):
        parse_definition(steps({"id": "a", "action": "echo"}, retention_days=-3))


def test_a_run_retried_after_it_was_chosen_is_not_deleted(fleet):
    from executions.retention import delete_runs

    chosen = [fleet["shop-old"].pk, fleet["shop-mid"].pk]
    Run.objects.filter(pk=fleet["shop-mid"].pk).update(status=RunStatus.RUNNING)  # a retry landed meanwhile
    assert delete_runs(chosen) == 1
    assert left(fleet) == set(fleet) - {"shop-old"}
    assert StepRun.objects.filter(run=fleet["shop-mid"]).exists()
