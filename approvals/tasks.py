"""Celery tasks of the approvals app."""

from celery import shared_task

from approvals.services import approvals_expire


@shared_task(name="approvals.expire", ignore_result=True, send_events=False)
def expire() -> dict:
    """Run by beat: apply on_timeout to overdue approvals."""
    return approvals_expire()
