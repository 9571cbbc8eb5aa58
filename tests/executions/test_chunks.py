"""A for_each's branches in chunks: one message, one claim and one record for many branches, each
branch still with its own attempt, events, retries and failure."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.celery_app import app
from executions import attempts, chunks
from executions.models import RunEvent, StepRun
from executions.services import run_start
from executions.states import RunStatus, StepStatus
from tests.executions.test_recovery import assert_no_branch_lost_or_rerun, heal_until_finished
from tests.support.actions import counter, executions_key
from tests.support.runs import step_row, steps, wait_for_run, wait_until, workflow
from tests.support.services import NOWHERE, purge_nowhere
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_chunk(settings):
    """Every for_each here is one chunk (up to CHORDFLOW_FAN_OUT_CHUNK branches)."""
    settings.CHORDFLOW_FAN_OUT_CHUNKS = 1
    purge_nowhere()
    yield
    purge_nowhere()


def mapped(action="echo", **params):
    return workflow(
        steps(
            {"id": "m", "action": action, "for_each": "{{ input.xs }}", "params": params or {"x": "{{ item }}"},
             "retry": {"max_attempts": 2, "backoff": 30}},
            {"id": "after", "action": "echo", "depends_on": ["m"]},
            defaults={"queue": NOWHERE},
        )
    )  # fmt: skip


def branch_rows(run):
    return list(StepRun.objects.filter(run=run, branch_index__isnull=False).order_by("branch_index"))


def queued_messages() -> list[bytes]:
    with app.connection_for_read() as conn:
        return conn.default_channel.client.lrange(NOWHERE, 0, -1)


def chunk_statements(width: int) -> int:
    run, _ = run_start(workflow=mapped(), input={"xs": list(range(width))})
    rows = branch_rows(run)
    with CaptureQueriesContext(connection) as queries:
        assert chunks.chunk_execute(parent_id=rows[0].parent_id, step_run_ids=[row.pk for row in rows]) == width
    assert step_row(run, "m").status == StepStatus.SUCCEEDED
    return len([q for q in queries.captured_queries if not q["sql"].startswith(("BEGIN", "COMMIT", "SAVEPOINT"))])


def test_one_task_carries_a_chunk_of_branches_and_the_chord_counts_chunks(settings):
    settings.CHORDFLOW_FAN_OUT_CHUNKS = 4
    run, _ = run_start(workflow=mapped(), input={"xs": list(range(10))})
    rows = branch_rows(run)
    assert [len({row.task_id for row in rows[i : i + 3]}) for i in range(0, 10, 3)] == [1, 1, 1, 1]
    assert len({row.task_id for row in rows}) == 4  # 3 + 3 + 3 + 1
    bodies = queued_messages()
    assert len(bodies) == 4
    assert sum(b"executions.step_execute_chunk" in body for body in bodies) == 3
    assert any(b"branches 0-2 attempt 1" in body for body in bodies)  # its argsrepr, for Flower and the logs


def test_a_chunk_costs_the_same_statements_at_any_size_and_records_every_branch_as_alone():
    narrow, wide = chunk_statements(5), chunk_statements(60)
    assert narrow == wide
    # claim + its events; the successes' UPDATE + their events + the count, which here completes the
    # step: the join (gather, update) and the run's advance (lock, steps, queue the next, events).
    # One by one, 60 branches would cost 360 statements and 60 messages.
    assert wide <= 11, wide

    run = RunEvent.objects.latest("id").run
    rows = branch_rows(run)
    assert [row.output for row in rows] == [{"x": i} for i in range(60)]
    assert all(row.status == StepStatus.SUCCEEDED and row.attempts == 1 and row.finished_at for row in rows)
    assert all(row.started_at <= row.finished_at for row in rows)
    kinds = RunEvent.objects.filter(run=run, branch_index__isnull=False).values_list("branch_index", "kind", "data")
    for index in range(60):
        mine = [(kind, data) for branch, kind, data in kinds if branch == index]
        assert [kind for kind, _ in mine] == ["step.started", "step.succeeded"]
        assert mine[0][1]["attempt"] == 1 and "wait" in mine[0][1]
        assert mine[1][1]["attempt"] == 1 and mine[1][1]["duration"] >= 0
    assert step_row(run, "m").output == [{"x": i} for i in range(60)]
    assert step_row(run, "after").status == StepStatus.QUEUED


def test_a_duplicate_delivery_of_a_chunk_runs_nothing_again():
    run, _ = run_start(workflow=mapped("test.by_item"), input={"xs": [1, 2, 3]})
    rows = branch_rows(run)
    ids = [row.pk for row in rows]
    assert chunks.chunk_execute(parent_id=rows[0].parent_id, step_run_ids=ids) == 3
    events_before = RunEvent.objects.filter(run=run).count()
    assert chunks.chunk_execute(parent_id=rows[0].parent_id, step_run_ids=ids) == 0
    assert RunEvent.objects.filter(run=run).count() == events_before
    assert [int(counter().get(executions_key(str(run.pk), "m", i))) for i in range(3)] == [1, 1, 1]


def test_a_failing_branch_retries_alone_in_a_task_of_its_own_while_the_chunk_goes_on():
    run, _ = run_start(workflow=mapped("test.by_item", flaky=[2]), input={"xs": [1, 2, 3]})
    rows = branch_rows(run)
    purge_nowhere()
    chunks.chunk_execute(parent_id=rows[0].parent_id, step_run_ids=[row.pk for row in rows])
    first, flaky, third = branch_rows(run)
    assert (first.status, third.status) == (StepStatus.SUCCEEDED, StepStatus.SUCCEEDED)
    assert flaky.status == StepStatus.RETRYING and flaky.error_type == "RetryableError"
    assert flaky.task_id not in {row.task_id for row in rows}  # its retry travels alone
    (body,) = queued_messages()  # the retry, with its countdown, for attempt 2
    assert flaky.task_id.encode() in body and b"executions.step_execute" in body
    assert step_row(run, "m").branches_done == 2
    assert attempts.step_execute(step_run_id=flaky.pk, attempt=2) is None  # what the retry task does
    assert step_row(run, "m").status == StepStatus.SUCCEEDED
    assert step_row(run, "m").output[1] == {"item": 2, "attempt": 2}
    assert [int(counter().get(executions_key(str(run.pk), "m", i))) for i in range(3)] == [1, 2, 1]


def test_a_branch_failing_for_good_fails_the_step_and_the_chunk_runs_none_of_its_cancelled_siblings():
    run, _ = run_start(workflow=mapped("test.by_item", doomed=[1]), input={"xs": [0, 1, 2, 3]})
    rows = branch_rows(run)
    chunks.chunk_execute(parent_id=rows[0].parent_id, step_run_ids=[row.pk for row in rows])
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert [row.status for row in branch_rows(run)] == [
        StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.CANCELLED,
    ]  # fmt: skip
    ran = [int(counter().get(executions_key(str(run.pk), "m", i)) or 0) for i in range(4)]
    assert ran == [1, 1, 0, 0]


# --- on real workers, whose fan-outs are single chunks ----------------------------------------------
CHUNKY = "chunks"


def chunky_worker(name: str) -> WorkerProcess:
    env = {"CHORDFLOW_FAN_OUT_CHUNKS": "1", "CHORDFLOW_CHUNK_FLUSH_MS": "50"}
    return WorkerProcess(name=name, queues=CHUNKY, env=env).start()


def test_a_chunk_whose_worker_dies_mid_way_loses_no_branch_and_reruns_none_that_succeeded():
    width = 12
    wf = workflow(
        steps(
            {"id": "each", "action": "test.sleep_then_record", "for_each": "{{ input.xs }}", "params": {"seconds": 0.3},
             "timeout": 3, "retry": {"max_attempts": 3, "backoff": 0.1}},
            defaults={"queue": CHUNKY},
        )
    )  # fmt: skip
    doomed = chunky_worker("chunk-doomed")
    try:
        run, _ = run_start(workflow=wf, input={"xs": list(range(width))})
        succeeded = StepRun.objects.filter(run=run, status=StepStatus.SUCCEEDED, branch_index__isnull=False)
        wait_until(lambda: succeeded.count() >= 3, what="three branches recorded")
        assert len(set(StepRun.objects.filter(run=run, branch_index__isnull=False).values_list("task_id"))) == 1
    finally:
        doomed.kill()
    succeeded_before = set(succeeded.values_list("branch_index", flat=True))
    assert 3 <= len(succeeded_before) < width
    rescuer = chunky_worker("chunk-rescuer")
    try:
        run = heal_until_finished(run)
    finally:
        rescuer.stop()
    assert_no_branch_lost_or_rerun(run, width, succeeded_before)


def test_each_branch_of_a_chunk_has_its_own_timeout_on_a_worker():
    wf = workflow(
        steps(
            {"id": "each", "action": "test.sleep_then_record", "for_each": "{{ input.xs }}",
             "params": {"seconds": "{{ item }}"}, "timeout": 1, "retry": {"max_attempts": 1}},
            defaults={"queue": CHUNKY},
        )
    )  # fmt: skip
    worker = chunky_worker("chunk-timeouts")
    try:
        run, _ = run_start(workflow=wf, input={"xs": [0, 3, 0]})
        run = wait_for_run(run.pk)
    finally:
        worker.stop()
    first, slow, last = branch_rows(run)
    assert slow.status == StepStatus.FAILED and slow.error_type == "TimeoutError", slow.error_message
    assert first.status == StepStatus.SUCCEEDED  # recorded before the failure
    assert last.status == StepStatus.CANCELLED  # the step failed: its sibling never ran
    assert counter().get(executions_key(str(run.pk), "each", 1)) is None  # stopped at 1 s, inside its sleep
