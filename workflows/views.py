"""REST endpoints for workflows: list, create, read, update (a new version), versions."""

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from config.rest import Conflict, ListPagination, error_responses, json_body
from workflows import selectors
from workflows.models import Workflow
from workflows.serializers import VersionOutput, WorkflowCreateInput, WorkflowOutput, WorkflowUpdateInput
from workflows.services import workflow_save

ERRORS = error_responses(400, 401, 403, 404, 409, 413, c404="No such workflow.", c409="The slug is taken.")


def get_workflow(slug: str) -> Workflow:
    workflow = selectors.workflow_get(slug)
    if workflow is None:
        raise NotFound(f"no workflow with slug {slug!r}")
    return selectors.with_current_version(workflow)


class WorkflowListView(GenericAPIView):
    required_permissions = {"GET": ["workflows.view_workflow"], "POST": ["workflows.add_workflow"]}
    pagination_class = ListPagination
    serializer_class = WorkflowOutput

    def get_queryset(self):
        return selectors.workflow_list().order_by("slug")

    @extend_schema(responses={200: WorkflowOutput(many=True), **ERRORS}, operation_id="workflows_list")
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        data = WorkflowOutput([selectors.with_current_version(w) for w in page], many=True).data
        return self.get_paginated_response(data)

    @extend_schema(
        request=WorkflowCreateInput, responses={201: WorkflowOutput, **ERRORS}, operation_id="workflows_create"
    )
    def post(self, request):
        body = WorkflowCreateInput(data=json_body(request))
        body.is_valid(raise_exception=True)
        with transaction.atomic():
            if Workflow.objects.filter(slug=body.validated_data["slug"]).exists():
                raise Conflict(f"a workflow with slug {body.validated_data['slug']!r} exists: PUT to change it")
            workflow, _version, _created = workflow_save(created_by=request.user, **body.validated_data)
        return Response(WorkflowOutput(get_workflow(workflow.slug)).data, status=status.HTTP_201_CREATED)


class WorkflowDetailView(GenericAPIView):
    required_permissions = {"GET": ["workflows.view_workflow"], "PUT": ["workflows.change_workflow"]}
    serializer_class = WorkflowOutput

    @extend_schema(responses={200: WorkflowOutput, **ERRORS}, operation_id="workflows_read")
    def get(self, request, slug: str):
        return Response(WorkflowOutput(get_workflow(slug)).data)

    @extend_schema(
        request=WorkflowUpdateInput,
        responses={200: WorkflowOutput, **ERRORS},
        description="A changed definition makes a new version; the same definition returns the current one.",
        operation_id="workflows_update",
    )
    def put(self, request, slug: str):
        get_workflow(slug)
        body = WorkflowUpdateInput(data=json_body(request))
        body.is_valid(raise_exception=True)
        workflow_save(slug=slug, definition=body.validated_data["definition"], created_by=request.user)
        return Response(WorkflowOutput(get_workflow(slug)).data)


class WorkflowVersionsView(GenericAPIView):
    required_permissions = {"GET": ["workflows.view_workflow"]}
    pagination_class = ListPagination
    serializer_class = VersionOutput

    @extend_schema(responses={200: VersionOutput(many=True), **ERRORS}, operation_id="workflows_versions")
    def get(self, request, slug: str):
        workflow = get_workflow(slug)
        versions = workflow.versions.select_related("created_by").order_by("-number")
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(VersionOutput(page, many=True).data)
