"""Approval steps and escalations, end to end on a real worker and broker."""

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core import mail
from django.db import connections
from django.utils import timezone

from approvals.exceptions import ApprovalConflictError, NotAnApproverError
from approvals.models import Approval, ApprovalKind, ApprovalStatus, Decision
from approvals.services import approval_decide, approvals_expire
from executions.models import Run, RunEvent
from executions.services import run_start
from executions.states import RunStatus, StepStatus
from tests.support.api import token_client, user_with
from tests.support.runs import step_row, steps, wait_for_run, workflow
from workflows.definition import parse_definition
from workflows.exceptions import DefinitionError

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]
WAITING = {RunStatus.WAITING}


@pytest.fixture
def people():
    finance = Group.objects.create(name="finance")
    made = {
        name: User.objects.create_user(name, f"{name}@example.com", "pw")
        for name in ("alice", "bob", "carol", "dave", "eve")
    }
    made["carol"].groups.add(finance)
    return made


def approval_workflow(**params):
    approve = {
        "approvers": {"users": ["alice", "bob"], "groups": ["finance"]},
        "message": "Ship order {{ input.id }}?",
        **params,
    }
    return workflow(
        steps(
            {"id": "approve", "type": "approval", "params": approve},
            {
                "id": "ship",
                "action": "echo",
                "depends_on": ["approve"],
                "params": {"by": "{{ steps.approve.output.decided_by }}"},
            },
        )
    )


def waiting_run(**params):
    run, _ = run_start(workflow=approval_workflow(**params), input={"id": 7})
    run = wait_for_run(run.pk, statuses=WAITING)
    return run, Approval.objects.get(run=run)


def test_approve_over_rest_succeeds_the_step_and_the_run_goes_on(people):
    run, approval = waiting_run()
    assert step_row(run, "approve").status == StepStatus.WAITING
    assert approval.message == "Ship order 7?" and approval.status == ApprovalStatus.PENDING
    assert sorted(mail.outbox[0].to) == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert f"/approvals/{approval.pk}/decide/" in mail.outbox[0].body

    inbox = token_client(people["carol"]).get("/api/approvals/?status=pending&mine=1").json()["results"]
    assert [a["id"] for a in inbox] == [approval.pk]
    assert token_client(people["eve"]).get("/api/approvals/?status=pending&mine=1").json()["results"] == []

    response = token_client(people["alice"]).post(
        f"/api/approvals/{approval.pk}/approve/", {"comment": "ok"}, format="json"
    )
    assert response.status_code == 200 and response.json()["status"] == "approved"
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED
    output = step_row(run, "approve").output
    assert output["approved"] is True and output["decided_by"] == ["alice"] and output["comment"] == "ok"
    assert step_row(run, "ship").output == {"by": ["alice"]}
    assert step_row(run, "ship").started_at >= Approval.objects.get().decided_at
    kinds = list(RunEvent.objects.filter(run=run).values_list("kind", flat=True))
    assert {"approval.requested", "approval.decided", "run.waiting", "step.waiting"} <= set(kinds)


def test_a_run_after_a_step_reads_waiting_over_rest_while_the_approval_is_pending(people):
    """prep -> approve -> pay on a real worker: the run reads `waiting` once prep is done, then runs on."""
    approve = {"approvers": {"users": ["alice"]}}
    wf = workflow(
        steps(
            {"id": "prep", "action": "echo"},
            {"id": "approve", "type": "approval", "depends_on": ["prep"], "params": approve},
            {"id": "pay", "action": "echo", "depends_on": ["approve"]},
        )
    )
    run, _ = run_start(workflow=wf)
    wait_for_run(run.pk, statuses=WAITING)
    reader = token_client(user_with("executions.view_run"))
    assert reader.get(f"/api/runs/{run.pk}/").json()["status"] == "waiting"
    approval = Approval.objects.get(run=run)
    assert token_client(people["alice"]).post(f"/api/approvals/{approval.pk}/approve/").status_code == 200
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    assert reader.get(f"/api/runs/{run.pk}/").json()["status"] == "succeeded"


def test_reject_fails_the_step_with_the_rejection_as_its_error(people):
    run, approval = waiting_run()
    response = token_client(people["bob"]).post(
        f"/api/approvals/{approval.pk}/reject/", {"comment": "too big"}, format="json"
    )
    assert response.status_code == 200
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.FAILED
    assert run.error["type"] == "ApprovalRejected" and run.error["message"] == "rejected by bob: too big"
    assert step_row(run, "ship").status == StepStatus.CANCELLED


def test_a_two_of_three_quorum_and_who_may_decide(people):
    run, approval = waiting_run(required=2)
    alice, carol, eve = (token_client(people[n]) for n in ("alice", "carol", "eve"))
    url = f"/api/approvals/{approval.pk}"
    assert eve.post(f"{url}/approve/", {}, format="json").status_code == 404  # not hers to see
    with pytest.raises(NotAnApproverError, match="not among the approvers"):
        approval_decide(approval_id=approval.pk, user=people["eve"], decision="approve")
    assert alice.post(f"{url}/approve/", {}, format="json").json()["status"] == "pending"
    again = alice.post(f"{url}/approve/", {}, format="json")
    assert again.status_code == 409 and "already decided" in again.json()["detail"]
    assert carol.post(f"{url}/approve/", {"comment": "fine"}, format="json").json()["status"] == "approved"
    settled = token_client(people["bob"]).post(f"{url}/reject/", {}, format="json")
    assert settled.status_code == 409 and "already approved" in settled.json()["detail"]
    run = wait_for_run(run.pk)
    assert step_row(run, "approve").output["decided_by"] == ["alice", "carol"]
    assert list(Decision.objects.values_list("username", "decision")) == [("alice", "approve"), ("carol", "approve")]


def test_someone_not_listed_gets_403(people):
    _run, approval = waiting_run()
    # eve may see every approval through the view permission, but decide none she is not listed on.
    people["eve"].user_permissions.add(Permission.objects.get(codename="view_approval"))
    eve = token_client(User.objects.get(pk=people["eve"].pk))
    assert eve.get(f"/api/approvals/{approval.pk}/").status_code == 200
    response = eve.post(f"/api/approvals/{approval.pk}/approve/", {}, format="json")
    assert response.status_code == 403
    assert "not among the approvers" in response.json()["detail"]


def test_two_approvers_at_the_same_moment_count_once_where_one_is_required(people):
    run, approval = waiting_run()
    outcomes: list = []
    barrier = threading.Barrier(2)

    def decide(name):
        try:
            barrier.wait()
            approval_decide(approval_id=approval.pk, user=User.objects.get(username=name), decision="approve")
            outcomes.append("ok")
        except ApprovalConflictError:
            outcomes.append("conflict")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decide, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    assert Decision.objects.filter(approval=approval).count() == 1
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    assert RunEvent.objects.filter(run=run, step_id="ship", kind="step.queued").count() == 1


@pytest.mark.parametrize(
    ("on_timeout", "run_status", "step_status"), [("reject", "failed", "failed"), ("approve", "succeeded", "succeeded")]
)
def test_expiry_applies_on_timeout(people, on_timeout, run_status, step_status):
    run, _approval = waiting_run(timeout=60, on_timeout=on_timeout)
    assert approvals_expire()["expired"] == 0  # not due yet
    assert approvals_expire(now=timezone.now() + timedelta(seconds=61))["expired"] == 1
    run = wait_for_run(run.pk)
    assert (run.status, step_row(run, "approve").status) == (run_status, step_status)
    assert RunEvent.objects.filter(run=run, kind="approval.expired").count() == 1
    assert Decision.objects.get().decision == "expire"


def test_expiry_escalates_to_new_approvers_with_a_new_deadline(people):
    run, approval = waiting_run(timeout=60, on_timeout="escalate", escalate_to={"users": ["dave"]})
    later = timezone.now() + timedelta(seconds=61)
    assert approvals_expire(now=later)["escalated"] == 1
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING and approval.escalations == 1
    assert approval.deadline >= later + timedelta(seconds=59)
    assert list(approval.users.values_list("username", flat=True)) == ["dave"]
    event = RunEvent.objects.get(run=run, kind="approval.escalated")
    assert event.data["to"] == {"users": ["dave"]}
    assert (
        token_client(people["alice"]).post(f"/api/approvals/{approval.pk}/approve/", {}, format="json").status_code
        == 404
    )
    assert (
        token_client(people["dave"]).post(f"/api/approvals/{approval.pk}/approve/", {}, format="json").status_code
        == 200
    )
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED


def escalating_run(escalate_to=None):
    wf = workflow(
        steps(
            {
                "id": "charge",
                "action": "test.flaky",
                "params": {"succeed_on": 2},
                "retry": {"max_attempts": 1},
                "on_failure": "escalate",
            },
            {
                "id": "receipt",
                "action": "echo",
                "depends_on": ["charge"],
                "params": {"charge": "{{ steps.charge.status }}"},
            },
            **({"escalate_to": escalate_to} if escalate_to else {}),
        )
    )
    run, _ = run_start(workflow=wf)
    run = wait_for_run(run.pk, statuses=WAITING)
    approval = Approval.objects.get(run=run)
    assert approval.kind == ApprovalKind.ESCALATION and approval.error["type"] == "RetryableError"
    assert step_row(run, "charge").status == StepStatus.WAITING
    return run, approval


@pytest.mark.parametrize(
    ("decision", "run_status", "charge_status", "receipt"),
    [
        ("retry", "succeeded", "succeeded", "succeeded"),
        ("skip", "succeeded", "skipped", "skipped"),
        ("fail", "failed", "failed", None),
    ],
)
def test_escalation_on_exhausted_retries(people, decision, run_status, charge_status, receipt):
    run, approval = escalating_run(escalate_to={"users": ["dave"]})
    people["dave"].user_permissions.add(Permission.objects.get(codename="resolve_escalation"))
    dave = token_client(people["dave"])
    assert (
        dave.post(f"/api/approvals/{approval.pk}/approve/", {}, format="json").status_code == 409
    )  # resolve it instead
    response = dave.post(
        f"/api/approvals/{approval.pk}/resolve/", {"decision": decision, "comment": "checked"}, format="json"
    )
    assert response.status_code == 200, response.json()
    run = wait_for_run(run.pk)
    assert run.status == run_status, run.error
    assert step_row(run, "charge").status == charge_status
    if receipt:
        assert step_row(run, "receipt").output == {"charge": receipt}
    if decision == "retry":
        assert step_row(run, "charge").attempts == 2  # a fresh set of attempts: the second one succeeds
    if decision == "fail":
        assert run.error["type"] == "RetryableError"


def test_resolving_an_escalation_needs_the_resolve_escalation_permission(people):
    """The finding: a staff user with no permission at all skipped a failed step."""
    run, approval = escalating_run()  # no escalate_to: everyone with the permission may resolve it
    resolve = f"/api/approvals/{approval.pk}/resolve/"
    skip = {"decision": "skip", "comment": "not needed"}
    sam = token_client(User.objects.create_user("sam", "sam@example.com", "pw", is_staff=True))
    assert sam.post(resolve, skip, format="json").status_code == 404  # not his to see either
    refused = token_client(user_with("approvals.view_approval")).post(resolve, skip, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "resolving an escalation needs the permission approvals.resolve_escalation"
    assert token_client(people["dave"]).post(resolve, skip, format="json").status_code == 404
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING

    resolver = token_client(user_with("approvals.resolve_escalation"))
    inbox = resolver.get("/api/approvals/?status=pending&mine=1").json()["results"]
    assert [a["id"] for a in inbox] == [approval.pk]
    assert sam.get("/api/approvals/?status=pending&mine=1").json()["results"] == []
    assert resolver.post(resolve, skip, format="json").status_code == 200
    run = wait_for_run(run.pk)
    assert (run.status, step_row(run, "charge").status) == (RunStatus.SUCCEEDED, StepStatus.SKIPPED)


def test_a_named_escalation_resolver_needs_the_permission_too(people):
    run, approval = escalating_run(escalate_to={"users": ["dave"]})
    dave = token_client(people["dave"])
    resolve = f"/api/approvals/{approval.pk}/resolve/"
    assert dave.post(resolve, {"decision": "skip"}, format="json").status_code == 404
    people["dave"].user_permissions.add(Permission.objects.get(codename="resolve_escalation"))
    # another holder of the permission is not named: the workflow chose dave
    other = token_client(user_with("approvals.resolve_escalation", "approvals.view_approval"))
    assert other.post(resolve, {"decision": "skip"}, format="json").status_code == 403
    assert dave.post(resolve, {"decision": "skip"}, format="json").status_code == 200
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED


def test_a_run_parked_on_an_approval_holds_no_worker(people, celery_worker):
    run, _approval = waiting_run()

    # A chord callback of an earlier test may still be finishing: give the worker a moment to drain.
    celery_worker.wait_idle(timeout=10)
    assert Run.objects.get(pk=run.pk).status == RunStatus.WAITING
    other, _ = run_start(
        workflow=workflow(steps({"id": "a", "action": "echo"}, {"id": "b", "action": "echo", "depends_on": ["a"]}))
    )
    assert wait_for_run(other.pk).status == RunStatus.SUCCEEDED
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING


def test_approval_params_are_validated_like_any_step_field():
    with pytest.raises(DefinitionError) as caught:
        parse_definition(
            {
                "name": "x",
                "steps": [
                    {
                        "id": "a",
                        "type": "approval",
                        "action": "echo",
                        "params": {"approvers": {"users": []}, "required": 0},
                    },
                    {
                        "id": "b",
                        "type": "approval",
                        "params": {"approvers": {"users": ["x"]}, "on_timeout": "escalate", "colour": 1},
                    },
                    {"id": "c", "type": "robot"},
                    {
                        "id": "d",
                        "type": "approval",
                        "params": {"approvers": {"users": ["x"]}},
                        "on_failure": "escalate",
                    },
                ],
            }
        )
    found = {p.path: p.message for p in caught.value.problems}
    assert found["steps[0].action"] == "a step of type 'approval' takes no action"
    assert found["steps[0].params.approvers"] == "must name at least one user or group"
    assert found["steps[0].params.required"] == "must be a whole number >= 1"
    assert found["steps[1].params.escalate_to"] == "is required when on_timeout is escalate"
    assert found["steps[1].params.timeout"] == "is required when on_timeout is escalate"
    assert found["steps[1].params.colour"].startswith("unknown key")
    assert found["steps[2].type"].startswith("unknown step type 'robot'")
    assert found["steps[3].on_failure"].startswith("escalate is not supported on a step of type 'approval'")


def test_a_rejected_approval_that_inherits_escalate_fails_the_run_instead_of_waiting_for_ever(people):
    """defaults.on_failure: escalate reaches the approval step too; a rejection is a person's decision
    already, so it fails the step and the run (it used to leave both waiting, the approval rejected)."""
    wf = workflow(
        steps(
            {"id": "approve", "type": "approval", "params": {"approvers": {"users": ["alice"]}}},
            {"id": "ship", "action": "echo", "depends_on": ["approve"]},
            defaults={"on_failure": "escalate"},
        )
    )
    run, _ = run_start(workflow=wf)
    approval = Approval.objects.get(run=run)
    approval_decide(approval_id=approval.pk, user=people["alice"], decision="reject", comment="no")
    run.refresh_from_db()
    assert (run.status, step_row(run, "approve").status) == (RunStatus.FAILED, StepStatus.FAILED)
    assert run.error["type"] == "ApprovalRejected"
    assert not Approval.objects.filter(run=run, kind=ApprovalKind.ESCALATION).exists()
