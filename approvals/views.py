"""REST endpoints for approvals: the inbox, one approval, approve, reject, resolve."""

from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from approvals import selectors, services
from approvals.exceptions import ApprovalConflictError, NotAnApproverError
from approvals.models import Decision
from approvals.serializers import ApprovalFilterInput, ApprovalOutput, DecideInput, ResolveInput
from config.rest import Conflict, NewestFirstPagination, error_responses


def errors(*codes: int) -> dict:
    return error_responses(
        *codes,
        c403="Not among the approvers.",
        c404="No such approval (or not one you may see).",
        c409="Already settled, already decided by you, of the other kind, or no longer awaited.",
    )


def with_decisions(queryset):
    return queryset.prefetch_related(Prefetch("decisions", queryset=Decision.objects.order_by("id")))


def get_approval(request, approval_id: int):
    approval = selectors.approval_get(user=request.user, approval_id=approval_id)
    if approval is None:
        raise NotFound(f"no approval {approval_id} that you may see")
    return approval


class ApprovalListView(GenericAPIView):
    """Everyone signed in may call these; who may see or decide what is checked per approval."""

    permission_classes = [IsAuthenticated]
    pagination_class = NewestFirstPagination
    serializer_class = ApprovalOutput

    @extend_schema(parameters=[ApprovalFilterInput], responses={200: ApprovalOutput(many=True), **errors(400, 401)})
    def get(self, request):
        filters = ApprovalFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(
            with_decisions(selectors.approval_list(user=request.user, **filters.validated_data))
        )
        return self.get_paginated_response(ApprovalOutput(page, many=True).data)


class ApprovalDetailView(GenericAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = ApprovalOutput

    @extend_schema(responses={200: ApprovalOutput, **errors(401, 404)})
    def get(self, request, approval_id: int):
        return Response(ApprovalOutput(get_approval(request, approval_id)).data)


class _DecisionView(GenericAPIView):
    permission_classes = [IsAuthenticated]
    input_serializer = DecideInput

    def act(self, request, approval_id: int, **data):
        raise NotImplementedError

    def post(self, request, approval_id: int):
        approval = get_approval(request, approval_id)
        body = self.input_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            self.act(request, approval.pk, **body.validated_data)
        except NotAnApproverError as exc:
            raise PermissionDenied(str(exc)) from None
        except ApprovalConflictError as exc:
            raise Conflict(str(exc)) from None
        fresh = with_decisions(selectors.approval_list(user=request.user)).get(pk=approval.pk)
        return Response(ApprovalOutput(fresh).data)


class ApproveView(_DecisionView):
    @extend_schema(request=DecideInput, responses={200: ApprovalOutput, **errors(400, 401, 403, 404, 409, 413)})
    def post(self, request, approval_id: int):
        return super().post(request, approval_id)

    def act(self, request, approval_id, *, comment):
        services.approval_decide(approval_id=approval_id, user=request.user, decision="approve", comment=comment)


class RejectView(_DecisionView):
    @extend_schema(request=DecideInput, responses={200: ApprovalOutput, **errors(400, 401, 403, 404, 409, 413)})
    def post(self, request, approval_id: int):
        return super().post(request, approval_id)

    def act(self, request, approval_id, *, comment):
        services.approval_decide(approval_id=approval_id, user=request.user, decision="reject", comment=comment)


class ResolveView(_DecisionView):
    input_serializer = ResolveInput

    @extend_schema(request=ResolveInput, responses={200: ApprovalOutput, **errors(400, 401, 403, 404, 409, 413)})
    def post(self, request, approval_id: int):
        return super().post(request, approval_id)

    def act(self, request, approval_id, *, decision, comment):
        services.escalation_resolve(approval_id=approval_id, user=request.user, decision=decision, comment=comment)
