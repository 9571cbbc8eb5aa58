"""App config for human approvals: plugs the approval step and escalations into the engine."""

from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from approvals.definition import validate_approval_params
        from approvals.selectors import approvals_pending_gauge
        from approvals.services import approval_request, approvals_purge, escalation_request
        from executions import gauges, retention, step_types
        from workflows.definition import register_step_type

        retention.on_purge(approvals_purge)
        gauges.register_gauge(approvals_pending_gauge, sampled=True)
        register_step_type("approval", validate_approval_params)
        step_types.register("approval", approval_request)
        step_types.register_escalation(escalation_request)
