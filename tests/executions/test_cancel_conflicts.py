"""A cancel that PostgreSQL aborts as a deadlock (a branch finishing at the same moment took the
locks in the other order) is tried again, instead of failing the request that asked for it."""

import threading

import pytest
from django.db import connections, transaction

from executions.models import StepRun
from executions.resolve import lock_run
from executions.services import run_cancel, run_start
from executions.states import RunStatus
from tests.support.runs import steps, wait_until, workflow


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_cancel_aborted_as_a_deadlock_is_tried_again(on_postgres):
    wf = workflow(
        steps({"id": "fan", "action": "echo", "for_each": "{{ [1, 2] }}", "queue": "nobody-reads-this"}),
        slug="cancel-deadlock",
    )
    run, _ = run_start(workflow=wf, input={})
    branch = StepRun.objects.filter(run=run, branch_index=0).get()
    holding, go, failures = threading.Event(), threading.Event(), []

    def finishing_branch():
        """What a branch's outcome does: its own row first, the run's row last (the advance)."""
        try:
            with transaction.atomic():
                StepRun.objects.select_for_update().get(pk=branch.pk)
                holding.set()
                go.wait(10)
                lock_run(run.pk)
        except Exception as exc:  # the side PostgreSQL aborts; the engine's own outcome retries there
            failures.append(exc)
        finally:
            connections.close_all()

    other = threading.Thread(target=finishing_branch)
    other.start()
    assert holding.wait(10)
    # The cancel locks the run, then waits for the branch's row; a moment later the branch asks
    # for the run's row: a cycle. The cancel waited first, so it is the one PostgreSQL aborts.
    threading.Timer(0.3, go.set).start()
    cancelled = run_cancel(run_id=run.pk, by="alice")
    other.join()
    assert cancelled.status == RunStatus.CANCELLED
    wait_until(lambda: StepRun.objects.get(pk=branch.pk).status == "cancelled", what="the branch cancelled")
    assert failures == []  # the branch's side got its locks once the cancel stepped back
