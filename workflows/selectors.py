"""Reads for workflows."""

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery

from workflows.models import Workflow, WorkflowVersion


def workflow_list() -> QuerySet[Workflow]:
    """Workflows with their current version attached as `current_version` (two queries in all)."""
    latest = WorkflowVersion.objects.filter(workflow=OuterRef("workflow")).order_by("-number").values("pk")[:1]
    current = WorkflowVersion.objects.filter(pk=Subquery(latest))
    return Workflow.objects.prefetch_related(Prefetch("versions", queryset=current, to_attr="current_versions"))


def with_current_version(workflow: Workflow) -> Workflow:
    versions = getattr(workflow, "current_versions", None)
    if versions is None:
        latest = workflow.latest_version()
        versions = [latest] if latest else []
    workflow.current_version = versions[0] if versions else None
    return workflow


def workflow_get(slug: str) -> Workflow | None:
    return workflow_list().filter(slug=slug).first()
