"""The shipped example workflows run to completion on a real worker."""

import pytest
from django.core.management import call_command

from executions.services import run_start
from executions.states import RunStatus
from tests.support.http_server import ScriptedServer
from tests.support.runs import step_row, wait_for_run
from workflows.models import Workflow

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


def test_the_order_pipeline_prices_lines_in_parallel_and_flags_big_orders():
    call_command("load_workflows", "workflows/examples/order_pipeline.yaml")
    lines = [{"sku": "BOOK-1", "qty": 2}, {"sku": "PEN-7", "qty": 10}, {"sku": "MUG-3", "qty": 1}]
    run, _ = run_start(
        workflow=Workflow.objects.get(slug="order-pipeline"), input={"order_id": "A-1", "total": 1499.0, "lines": lines}
    )
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == {"priced_lines": 3, "units": 13}
    assert step_row(run, "notify").output["flagged"] is True


def test_the_etl_retries_a_busy_api_honouring_retry_after_then_loads():
    call_command("load_workflows", "workflows/examples/nightly_etl.yaml")
    with ScriptedServer() as api:
        api.reply("/records", 503, {"error": "busy"}, {"Retry-After": "1"})
        api.reply("/records", 200, {"records": [{"id": 1, "name": " ada "}, {"id": 2, "name": "grace"}]})
        api.reply("/load", 200, {"ok": True})
        run, _ = run_start(
            workflow=Workflow.objects.get(slug="nightly-etl"),
            input={"source_url": f"{api.url}/records", "target_url": f"{api.url}/load"},
        )
        run = wait_for_run(run.pk, timeout=60)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.output == {"loaded": 2}
    assert step_row(run, "extract").attempts == 2
    assert step_row(run, "transform").output == [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]
    load = api.requests[-1]
    assert load["method"] == "POST" and '"name": "Ada"' in load["body"]
