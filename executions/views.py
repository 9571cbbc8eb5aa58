"""REST endpoints for runs: start, list, read, steps' branches, events, step logs, cancel, retry."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from config.rest import (
    InOrderPagination,
    NewestFirstPagination,
    error_responses,
    json_body,
    page_size_parameter,
)
from executions import selectors
from executions.models import Run
from executions.serializers import (
    BranchOutput,
    EventFilterInput,
    EventOutput,
    LogFilterInput,
    LogOutput,
    ReplayConflictOutput,
    RunDetailOutput,
    RunFilterInput,
    RunOutput,
    RunStartInput,
)
from executions.services import run_cancel, run_retry, run_start
from workflows import selectors as workflow_selectors
from workflows.services import version_spec

VIEW, START = ["executions.view_run"], ["executions.add_run"]


def errors(*codes: int) -> dict:
    return error_responses(*codes, c404="No such run, workflow or step.", c409="The run's state does not allow this.")


def get_run(run_id: str) -> Run:
    run = selectors.run_get(run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id!r}" + ("" if selectors.parse_run_id(run_id) else " (not a UUID)"))
    return run


def get_workflow(slug: str):
    workflow = workflow_selectors.workflow_get(slug)
    if workflow is None:
        raise NotFound(f"no workflow with slug {slug!r}")
    return workflow


def by(request) -> str:
    return f"user:{request.user.get_username()}"


def detail(run: Run) -> dict:
    run.step_list = selectors.run_steps(run)
    return RunDetailOutput(run).data


def replay_without_view(run: Run) -> Response:
    """A replayed key tells a caller who may start runs but not read them which run holds it, and nothing more."""
    body = {
        "detail": f"this idempotency key was used before, for run {run.pk} ({run.status}); "
        "reading that run needs the permission executions.view_run",
        "id": str(run.pk),
        "status": run.status,
    }
    return Response(body, status=status.HTTP_409_CONFLICT)


class RunStartView(GenericAPIView):
    required_permissions = {"POST": START}
    serializer_class = RunStartInput

    @extend_schema(
        request=RunStartInput,
        responses={
            201: RunDetailOutput,
            200: RunDetailOutput,
            **errors(400, 401, 403, 404, 413),
            409: OpenApiResponse(
                ReplayConflictOutput,
                description="The workflow is inactive or has no version; or the idempotency key was used before "
                "and you may not view runs (executions.view_run): only that run's id and status.",
            ),
        },
        description="201 with a new run; 200 with the existing run when the idempotency key was used before "
        "(409 with only its id and status for a caller without executions.view_run).",
        operation_id="runs_start",
    )
    def post(self, request, slug: str):
        workflow = get_workflow(slug)
        body = RunStartInput(data=json_body(request))
        body.is_valid(raise_exception=True)
        run, created = run_start(
            workflow=workflow,
            input=body.validated_data["input"],
            idempotency_key=body.validated_data.get("idempotency_key"),
            started_by=by(request),
            created_by=request.user,
        )
        if not created and not request.user.has_perms(VIEW):
            return replay_without_view(run)
        return Response(detail(get_run(str(run.pk))), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RunListView(GenericAPIView):
    required_permissions = {"GET": VIEW}
    pagination_class = NewestFirstPagination
    serializer_class = RunOutput

    @extend_schema(
        parameters=[RunFilterInput, page_size_parameter(500)],
        responses={200: RunOutput(many=True), **errors(400, 401, 403)},
        operation_id="runs_list",
    )
    def get(self, request):
        filters = RunFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.run_list(**filters.validated_data))
        return self.get_paginated_response(RunOutput(page, many=True).data)


class RunDetailView(GenericAPIView):
    required_permissions = {"GET": VIEW}
    serializer_class = RunDetailOutput

    @extend_schema(responses={200: RunDetailOutput, **errors(401, 403, 404)}, operation_id="runs_read")
    def get(self, request, run_id: str):
        return Response(detail(get_run(run_id)))


class RunBranchesView(GenericAPIView):
    required_permissions = {"GET": VIEW}
    pagination_class = InOrderPagination
    serializer_class = BranchOutput

    @extend_schema(
        parameters=[page_size_parameter(1000)],
        responses={200: BranchOutput(many=True), **errors(400, 401, 403, 404)},
        operation_id="runs_step_branches",
    )
    def get(self, request, run_id: str, step_id: str):
        run = get_run(run_id)
        if step_id not in version_spec(run.version).steps_by_id:
            raise NotFound(f"run {run.pk} has no step {step_id!r}")
        page = self.paginate_queryset(selectors.step_branches(run, step_id))
        return self.get_paginated_response(BranchOutput(page, many=True).data)


class _RunRowsView(GenericAPIView):
    """A run's rows in the order they were written (events, log lines), filtered, cursor-paginated."""

    required_permissions = {"GET": VIEW}
    pagination_class = InOrderPagination
    filters = EventFilterInput
    serializer_class = EventOutput
    rows = staticmethod(selectors.run_events)

    def filter_context(self, run: Run) -> dict:
        return {}

    def get(self, request, run_id: str):
        run = get_run(run_id)
        filters = self.filters(data=request.query_params, context=self.filter_context(run))
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(self.rows(run, **filters.validated_data))
        return self.get_paginated_response(self.serializer_class(page, many=True).data)


def rows_schema(filters, output, operation_id: str, description: str | None = None):
    return extend_schema(
        parameters=[filters, page_size_parameter(1000)],
        responses={200: output(many=True), **errors(400, 401, 403, 404)},
        description=description,
        operation_id=operation_id,
    )


class RunEventsView(_RunRowsView):
    @rows_schema(EventFilterInput, EventOutput, "runs_events")
    def get(self, request, run_id: str):
        return super().get(request, run_id)


class RunLogsView(_RunRowsView):
    filters = LogFilterInput
    serializer_class = LogOutput
    rows = staticmethod(selectors.run_logs)

    def filter_context(self, run: Run) -> dict:
        return {"steps": version_spec(run.version).steps_by_id}  # an unknown step is a 400 naming `step`

    @rows_schema(
        LogFilterInput, LogOutput, "runs_logs",
        "The lines the run's actions logged (`context.log`), and how failed attempts ended, in the order they "
        "were written.",
    )  # fmt: skip
    def get(self, request, run_id: str):
        return super().get(request, run_id)


class _RunCommandView(GenericAPIView):
    """A state change of a run: 202 with the run, or 409 saying why its state does not allow it."""

    serializer_class = RunDetailOutput
    service = staticmethod(run_cancel)

    def post(self, request, run_id: str):
        run = self.service(run_id=get_run(run_id).pk, by=by(request))
        return Response(detail(get_run(str(run.pk))), status=status.HTTP_202_ACCEPTED)


class RunCancelView(_RunCommandView):
    required_permissions = {"POST": ["executions.cancel_run"]}
    service = staticmethod(run_cancel)

    @extend_schema(
        request=None, responses={202: RunDetailOutput, **errors(401, 403, 404, 409)}, operation_id="runs_cancel"
    )
    def post(self, request, run_id: str):
        return super().post(request, run_id)


class RunRetryView(_RunCommandView):
    required_permissions = {"POST": ["executions.retry_run"]}
    service = staticmethod(run_retry)

    @extend_schema(
        request=None, responses={202: RunDetailOutput, **errors(401, 403, 404, 409)}, operation_id="runs_retry"
    )
    def post(self, request, run_id: str):
        return super().post(request, run_id)
