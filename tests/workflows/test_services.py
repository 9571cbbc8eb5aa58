"""Versions: a changed definition makes a new one, an identical one does not; runs stay pinned."""

import pytest
from django.core.management import CommandError, call_command

from executions.services import run_start
from tests.support.runs import steps
from workflows.exceptions import DefinitionError
from workflows.models import Workflow, WorkflowVersion
from workflows.services import workflow_save

pytestmark = pytest.mark.django_db


def test_saving_makes_versions_only_for_changes_and_runs_stay_pinned():
    first = steps({"id": "a", "action": "echo"})
    wf, v1, created = workflow_save(slug="orders", definition=first)
    assert (v1.number, created) == (1, True)
    run, _ = run_start(workflow=wf)
    _, same, created = workflow_save(slug="orders", definition=dict(reversed(list(first.items()))))
    assert (same.pk, created) == (v1.pk, False)
    _, v2, created = workflow_save(slug="orders", definition=steps({"id": "b", "action": "echo"}))
    assert (v2.number, created) == (2, True)
    run.refresh_from_db()
    assert run.version_id == v1.pk


def test_an_invalid_definition_is_refused_with_every_problem_and_nothing_is_stored():
    with pytest.raises(DefinitionError) as caught:
        workflow_save(
            slug="bad", definition={"name": "x", "steps": [{"id": "a", "action": "nope", "depends_on": ["a"]}]}
        )
    assert len(caught.value.problems) == 2
    with pytest.raises(DefinitionError, match="slug"):
        workflow_save(slug="has space", definition=steps({"id": "a", "action": "echo"}))
    assert not Workflow.objects.exists() and not WorkflowVersion.objects.exists()


def test_load_workflows_loads_the_examples_once(capsys, tmp_path):
    call_command("load_workflows", "workflows/examples")
    assert set(Workflow.objects.values_list("slug", flat=True)) == {"order-pipeline", "nightly-etl"}
    call_command("load_workflows", "workflows/examples")
    assert "unchanged" in capsys.readouterr().out
    assert WorkflowVersion.objects.count() == 2

    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nsteps:\n  - id: a\n    action: nope\n")
    with pytest.raises(CommandError, match="1 of 1 files were not loaded"):
        call_command("load_workflows", str(bad))
    assert "steps[0].action: unknown action 'nope'" in capsys.readouterr().err
    assert not Workflow.objects.filter(slug="broken").exists()
