"""Runs, their step runs (one per step, plus one per for_each branch) and the append-only event log."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from executions.states import FireOutcome, Overlap, RunStatus, StepStatus
from workflows.action_log import LogLevel


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.PROTECT, related_name="runs")
    version = models.ForeignKey("workflows.WorkflowVersion", on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True, help_text="{step, branch, type, message} of what failed the run")
    started_by = models.CharField(max_length=200, blank=True, help_text="Who or what started it: user:alice, beat")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001 (NULL: no key, not unique)
    schedule = models.ForeignKey(
        "executions.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    nominal_time = models.DateTimeField(null=True, blank=True, help_text="The schedule's fire time that started it.")
    concurrency_key = models.CharField(  # noqa: DJ001 (NULL: the workflow has no concurrency limit)
        max_length=200, null=True, blank=True, help_text="Its concurrency bucket (its workflow's `concurrency.key`)."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("cancel_run", "Can cancel runs"), ("retry_run", "Can retry runs")]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="run_idempotency_key_unique",
            )
        ]
        indexes = [
            models.Index(
                fields=["workflow", "concurrency_key", "status", "created_at"],
                condition=Q(concurrency_key__isnull=False),
                name="run_concurrency_bucket",
            ),
            models.Index(fields=["schedule", "status"], name="run_schedule_status"),
            models.Index(fields=["status", "created_at"], name="run_status_created"),
            models.Index(fields=["workflow", "created_at"], name="run_workflow_created"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow.slug} run {self.id}"


class StepRun(models.Model):
    """One step of one run; a for_each step has a parent row (branch_index null) and one row per item."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="step_runs")
    step_id = models.CharField(max_length=100)
    branch_index = models.PositiveIntegerField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="branches")
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts made, over every retry of the run.")
    attempt_base = models.PositiveIntegerField(default=0, help_text="Attempts made before the last run retry.")
    input = models.JSONField(null=True, blank=True, help_text="The resolved params.")
    item = models.JSONField(null=True, blank=True, help_text="The for_each item of a branch.")
    output = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    error_traceback = models.TextField(blank=True)
    task_id = models.CharField(max_length=64, blank=True, help_text="The Celery task id, to revoke it.")
    branch_count = models.PositiveIntegerField(null=True, blank=True)
    branches_done = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "step_id"], condition=Q(branch_index__isnull=True), name="steprun_step_unique"
            ),
            models.UniqueConstraint(
                fields=["parent", "branch_index"], condition=Q(parent__isnull=False), name="steprun_branch_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "queued_at"], name="steprun_status_queued"),
            models.Index(fields=["status", "started_at"], name="steprun_status_started"),
            models.Index(fields=["status", "next_retry_at"], name="steprun_status_retry"),
            models.Index(fields=["step_id", "status"], name="steprun_step_status"),
        ]

    def __str__(self) -> str:
        branch = "" if self.branch_index is None else f"[{self.branch_index}]"
        return f"{self.step_id}{branch} ({self.status})"

    @property
    def attempts_this_round(self) -> int:
        return self.attempts - self.attempt_base


class RunEvent(models.Model):
    """An append-only record of one transition; never updated."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    step_id = models.CharField(max_length=100, blank=True)
    branch_index = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=40)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        indexes = [models.Index(fields=["run", "id"], name="runevent_run_id")]

    def __str__(self) -> str:
        return f"{self.kind} {self.step_id}"


class StepLog(models.Model):
    """One line an action logged (or the engine, for how an attempt failed); append-only, written in
    batches per attempt (executions.steplogs)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="step_logs", db_index=False)
    step_id = models.CharField(max_length=100)
    branch_index = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveIntegerField()
    level = models.PositiveSmallIntegerField(choices=LogLevel.choices)
    message = models.TextField()
    extra = models.JSONField(default=dict, blank=True)
    logged_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "id"]
        indexes = [
            models.Index(fields=["run", "id"], name="steplog_run_id"),
            models.Index(fields=["run", "step_id", "id"], name="steplog_run_step_id"),
        ]

    def __str__(self) -> str:
        return f"{self.step_id} #{self.attempt} {self.get_level_display()}: {self.message[:60]}"


class Schedule(models.Model):
    """A cron trigger of a workflow. `next_fire_at` is the next nominal time, `next_due_at` that time
    plus its jitter: the tick reads the index on `next_due_at` (NULL while paused or finished)."""

    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE, related_name="schedules")
    name = models.CharField(max_length=100)
    cron = models.CharField(max_length=100, help_text="5 fields, or @hourly, @daily, @weekly, @monthly")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin")
    input = models.JSONField(default=dict, blank=True)
    overlap = models.CharField(max_length=16, choices=Overlap.choices, default=Overlap.SKIP)
    catchup_window = models.PositiveIntegerField(default=3600, help_text="Seconds: older missed times are `missed`.")
    paused = models.BooleanField(default=False)
    note = models.TextField(blank=True)
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    remaining_runs = models.PositiveIntegerField(null=True, blank=True)
    jitter = models.PositiveIntegerField(default=0, help_text="Seconds: each fire waits a fixed part of it.")
    next_fire_at = models.DateTimeField(null=True, blank=True)
    next_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "name"]
        constraints = [models.UniqueConstraint(fields=["workflow", "name"], name="schedule_name_unique")]
        permissions = [("trigger_schedule", "Can trigger and backfill schedules")]

    def __str__(self) -> str:
        return f"{self.name} ({self.cron})"


class ScheduleFire(models.Model):
    """One nominal time of one schedule, and what became of it. Unique: a time never fires twice."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    nominal_time = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=FireOutcome.choices)
    overlap = models.CharField(max_length=16, choices=Overlap.choices, help_text="The policy it was judged by.")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-nominal_time"]
        constraints = [models.UniqueConstraint(fields=["schedule", "nominal_time"], name="schedulefire_time_unique")]
        indexes = [models.Index(fields=["schedule", "outcome", "nominal_time"], name="schedulefire_outcome")]

    def __str__(self) -> str:
        return f"{self.schedule_id} @ {self.nominal_time.isoformat()}: {self.outcome}"


class ConcurrencyBucket(models.Model):
    """One row per workflow and concurrency key: starts and finishes of its runs lock it (SELECT … FOR
    UPDATE), so counting its running runs and starting the next are one decision at a time. The runs'
    rows are the truth; the bucket holds no count that a crash could leave wrong."""

    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workflow", "key"], name="concurrency_bucket_unique")]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.key}"


class MetricCursor(models.Model):
    """How far the metrics fold has read the event log: one row, locked by each fold.

    SQLite commits its single writer's rows in id order, so an id is enough. On PostgreSQL ids are
    taken at insert and commit in another order; there every event carries its transaction's id
    (`txid`, a column only PostgreSQL has), and the fold reads only transactions older than every
    one still running, so an event that commits late is never passed over (executions.metrics).
    """

    last_event_id = models.BigIntegerField(default=0)
    last_txid = models.BigIntegerField(default=0)
    history_done = models.BooleanField(default=False, help_text="Events from before txid existed are folded.")
    folded_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"metrics folded to event {self.last_event_id} (txid {self.last_txid})"


class MetricTotal(models.Model):
    """A series' running total since the first event: counts, and a histogram's sum and buckets.

    Totals outlive the runs they count (retention deletes runs, never these), so the counters that
    /metrics serves only go up.
    """

    series = models.CharField(max_length=32)
    workflow = models.CharField(max_length=100)
    step = models.CharField(max_length=100, blank=True)
    queue = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=32, blank=True)
    count = models.BigIntegerField(default=0)
    sum = models.FloatField(default=0)
    buckets = models.JSONField(default=list, blank=True, help_text="Observations per bucket (not cumulative).")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["series", "workflow", "step", "queue", "status"], name="metrictotal_key")
        ]

    def __str__(self) -> str:
        return f"{self.series}{{{self.workflow},{self.step},{self.queue},{self.status}}} {self.count}"


class MetricRollup(models.Model):
    """A series per workflow over one minute or one hour (`period` seconds), for the admin's metrics page."""

    period = models.PositiveIntegerField()
    start = models.DateTimeField()
    series = models.CharField(max_length=32)
    workflow = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=100, blank=True)
    count = models.BigIntegerField(default=0)
    sum = models.FloatField(default=0)
    buckets = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["period", "start", "series", "workflow", "status"], name="metricrollup_key")
        ]

    def __str__(self) -> str:
        return f"{self.series} {self.workflow} {self.status} @ {self.start.isoformat()}/{self.period}s: {self.count}"
