"""The REST API under /api/, with its OpenAPI schema and docs."""

from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from approvals import views as approvals
from executions import schedule_views as schedules
from executions import views as runs
from workflows import views as workflows


class PublicSchemaView(SpectacularAPIView):
    permission_classes = []  # the schema describes the API; it holds no data


class PublicDocsView(SpectacularSwaggerView):
    permission_classes = []


ENDPOINTS = {
    "workflows": "workflow-list",
    "runs": "run-list",
    "schedules": "schedule-list",
    "approvals": "approval-list",
}


class ApiRootView(APIView):
    """GET /api/: where everything is, as links (the address `make run` prints leads here)."""

    permission_classes = []  # links only, no data

    @extend_schema(
        responses=inline_serializer(
            "ApiRoot",
            {
                "docs": serializers.URLField(help_text="Browsable API docs."),
                "schema": serializers.URLField(help_text="The OpenAPI 3 schema."),
                "endpoints": serializers.DictField(child=serializers.URLField()),
            },
        )
    )
    def get(self, request):
        return Response(
            {
                "docs": reverse("docs", request=request),
                "schema": reverse("schema", request=request),
                "endpoints": {name: reverse(url_name, request=request) for name, url_name in ENDPOINTS.items()},
            }
        )


urlpatterns = [
    path("", ApiRootView.as_view(), name="api-root"),
    path("workflows/", workflows.WorkflowListView.as_view(), name="workflow-list"),
    path("workflows/<str:slug>/", workflows.WorkflowDetailView.as_view(), name="workflow-detail"),
    path("workflows/<str:slug>/versions/", workflows.WorkflowVersionsView.as_view(), name="workflow-versions"),
    path("workflows/<str:slug>/runs/", runs.RunStartView.as_view(), name="run-start"),
    path("runs/", runs.RunListView.as_view(), name="run-list"),
    path("runs/<str:run_id>/", runs.RunDetailView.as_view(), name="run-detail"),
    path("runs/<str:run_id>/events/", runs.RunEventsView.as_view(), name="run-events"),
    path("runs/<str:run_id>/logs/", runs.RunLogsView.as_view(), name="run-logs"),
    path("runs/<str:run_id>/steps/<str:step_id>/branches/", runs.RunBranchesView.as_view(), name="run-branches"),
    path("runs/<str:run_id>/cancel/", runs.RunCancelView.as_view(), name="run-cancel"),
    path("runs/<str:run_id>/retry/", runs.RunRetryView.as_view(), name="run-retry"),
    path("schedules/", schedules.ScheduleListView.as_view(), name="schedule-list"),
    path("schedules/<int:schedule_id>/", schedules.ScheduleDetailView.as_view(), name="schedule-detail"),
    path("schedules/<int:schedule_id>/pause/", schedules.SchedulePauseView.as_view(), name="schedule-pause"),
    path("schedules/<int:schedule_id>/resume/", schedules.ScheduleResumeView.as_view(), name="schedule-resume"),
    path("schedules/<int:schedule_id>/trigger/", schedules.ScheduleTriggerView.as_view(), name="schedule-trigger"),
    path("schedules/<int:schedule_id>/backfill/", schedules.ScheduleBackfillView.as_view(), name="schedule-backfill"),
    path("schedules/<int:schedule_id>/fires/", schedules.ScheduleFiresView.as_view(), name="schedule-fires"),
    path("approvals/", approvals.ApprovalListView.as_view(), name="approval-list"),
    path("approvals/<int:approval_id>/", approvals.ApprovalDetailView.as_view(), name="approval-detail"),
    path("approvals/<int:approval_id>/approve/", approvals.ApproveView.as_view(), name="approval-approve"),
    path("approvals/<int:approval_id>/reject/", approvals.RejectView.as_view(), name="approval-reject"),
    path("approvals/<int:approval_id>/resolve/", approvals.ResolveView.as_view(), name="approval-resolve"),
    path("schema/", PublicSchemaView.as_view(), name="schema"),
    path("docs/", PublicDocsView.as_view(url_name="schema"), name="docs"),
]
