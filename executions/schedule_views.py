"""REST endpoints for schedules: list, create, read, change, delete, pause, resume, trigger, backfill, fires."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from config.rest import (
    BaseCursorPagination,
    ListPagination,
    StrictSerializer,
    error_responses,
    json_body,
    page_size_parameter,
)
from executions import schedules, selectors
from executions.exceptions import ScheduleError
from executions.models import Schedule, ScheduleFire
from executions.schedule_serializers import (
    BackfillInput,
    BackfillOutput,
    FireOutput,
    PauseInput,
    ScheduleInput,
    ScheduleOutput,
    TriggerInput,
)
from executions.views import get_workflow
from workflows.exceptions import Problem

VIEW, CHANGE = ["executions.view_schedule"], ["executions.change_schedule"]
TRIGGER = ["executions.trigger_schedule"]


def errors(*codes: int) -> dict:
    return error_responses(*codes, c404="No such schedule or workflow.")


def get_schedule(schedule_id: int) -> Schedule:
    found = Schedule.objects.select_related("workflow").filter(pk=schedule_id) if schedule_id < 2**63 else None
    schedule = found.first() if found is not None else None
    if schedule is None:
        raise NotFound(f"no schedule with id {schedule_id}")
    return schedule


def body(request) -> dict:
    data = json_body(request)
    if not isinstance(data, dict):
        raise ScheduleError([Problem("", "the body must be a JSON object")])
    return dict(data)


class FiresPagination(BaseCursorPagination):
    ordering = "-nominal_time"
    page_size = 50
    max_page_size = 500


class ScheduleListView(GenericAPIView):
    required_permissions = {"GET": VIEW, "POST": ["executions.add_schedule"]}
    pagination_class = ListPagination
    serializer_class = ScheduleOutput

    @extend_schema(
        parameters=[OpenApiParameter("workflow", str, description="Only this workflow's schedules (its slug).")],
        responses={200: ScheduleOutput(many=True), **errors(400, 401, 403)},
        operation_id="schedules_list",
    )
    def get(self, request):
        found = selectors.schedule_list().order_by("id")
        if request.query_params.get("workflow"):
            found = found.filter(workflow__slug=request.query_params["workflow"])
        page = selectors.with_last_fires(self.paginate_queryset(found))
        return self.get_paginated_response(ScheduleOutput(page, many=True).data)

    @extend_schema(
        request=ScheduleInput,
        responses={201: ScheduleOutput, **errors(400, 401, 403, 404, 413)},
        operation_id="schedules_create",
    )
    def post(self, request):
        values = body(request)
        slug = values.pop("workflow", None)
        if not isinstance(slug, str) or not slug:
            raise ScheduleError([Problem("workflow", "is required: the slug of the workflow to start")])
        schedule = schedules.schedule_save(workflow=get_workflow(slug), values=values)
        return Response(ScheduleOutput(schedule).data, status=status.HTTP_201_CREATED)


class ScheduleDetailView(GenericAPIView):
    required_permissions = {"GET": VIEW, "PATCH": CHANGE, "DELETE": ["executions.delete_schedule"]}
    serializer_class = ScheduleOutput

    @extend_schema(responses={200: ScheduleOutput, **errors(401, 403, 404)}, operation_id="schedules_read")
    def get(self, request, schedule_id: int):
        return Response(ScheduleOutput(get_schedule(schedule_id)).data)

    @extend_schema(
        request=ScheduleInput(partial=True),
        responses={200: ScheduleOutput, **errors(400, 401, 403, 404, 413)},
        operation_id="schedules_update",
    )
    def patch(self, request, schedule_id: int):
        schedule = get_schedule(schedule_id)
        values = body(request)
        slug = values.pop("workflow", schedule.workflow.slug)
        if slug != schedule.workflow.slug:
            raise ScheduleError([Problem("workflow", "cannot change: make a schedule on the other workflow")])
        schedule = schedules.schedule_save(workflow=schedule.workflow, values=values, schedule=schedule)
        return Response(ScheduleOutput(schedule).data)

    @extend_schema(responses={204: None, **errors(401, 403, 404)}, operation_id="schedules_delete")
    def delete(self, request, schedule_id: int):
        get_schedule(schedule_id).delete()  # its runs keep running; their `schedule` becomes null
        return Response(status=status.HTTP_204_NO_CONTENT)


def _input(serializer_class: type[StrictSerializer], request) -> dict:
    data = serializer_class(data=request.data if request.data else {})
    data.is_valid(raise_exception=True)
    return data.validated_data


class SchedulePauseView(GenericAPIView):
    required_permissions = {"POST": CHANGE}
    serializer_class = PauseInput

    @extend_schema(
        request=PauseInput,
        responses={200: ScheduleOutput, **errors(400, 401, 403, 404)},
        operation_id="schedules_pause",
    )
    def post(self, request, schedule_id: int):
        note = _input(PauseInput, request)["note"]
        return Response(ScheduleOutput(schedules.schedule_pause(schedule=get_schedule(schedule_id), note=note)).data)


class ScheduleResumeView(GenericAPIView):
    required_permissions = {"POST": CHANGE}
    serializer_class = ScheduleOutput

    @extend_schema(
        request=None, responses={200: ScheduleOutput, **errors(401, 403, 404)}, operation_id="schedules_resume"
    )
    def post(self, request, schedule_id: int):
        return Response(ScheduleOutput(schedules.schedule_resume(schedule=get_schedule(schedule_id))).data)


class ScheduleTriggerView(GenericAPIView):
    required_permissions = {"POST": TRIGGER}
    serializer_class = TriggerInput

    @extend_schema(
        request=TriggerInput,
        responses={201: FireOutput, **errors(400, 401, 403, 404)},
        operation_id="schedules_trigger",
    )
    def post(self, request, schedule_id: int):
        overlap = _input(TriggerInput, request).get("overlap")
        fire = schedules.schedule_trigger(schedule=get_schedule(schedule_id), overlap=overlap)
        return Response(FireOutput(fire).data, status=status.HTTP_201_CREATED)


class ScheduleBackfillView(GenericAPIView):
    required_permissions = {"POST": TRIGGER}
    serializer_class = BackfillInput

    @extend_schema(
        request=BackfillInput,
        responses={202: BackfillOutput, **errors(400, 401, 403, 404)},
        operation_id="schedules_backfill",
    )
    def post(self, request, schedule_id: int):
        data = _input(BackfillInput, request)
        count = schedules.schedule_backfill(
            schedule=get_schedule(schedule_id), start=data["start"], end=data["end"], overlap=data["overlap"]
        )
        return Response({"count": count}, status=status.HTTP_202_ACCEPTED)


class ScheduleFiresView(GenericAPIView):
    required_permissions = {"GET": VIEW}
    pagination_class = FiresPagination
    serializer_class = FireOutput

    @extend_schema(
        parameters=[page_size_parameter(500)],
        responses={200: FireOutput(many=True), **errors(400, 401, 403, 404)},
        operation_id="schedules_fires",
    )
    def get(self, request, schedule_id: int):
        page = self.paginate_queryset(ScheduleFire.objects.filter(schedule=get_schedule(schedule_id)))
        return self.get_paginated_response(FireOutput(page, many=True).data)
