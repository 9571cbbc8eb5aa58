"""The step logs on the admin's pages: a step's latest lines in its panel on the run page, and a step
run's own lines on its page. Escaped like every other cell; the live page appends lines as text."""

from __future__ import annotations

import json

from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from executions.admin_html import html_table
from executions.models import Run, StepLog, StepRun

LOG_LINES_SHOWN = 200  # a step's latest lines in its panel; REST has them all


def latest_lines(run: Run, step_id: str, *, branch: int | None = None, branches: bool = True) -> list[StepLog]:
    """The step's latest LOG_LINES_SHOWN lines (of every branch unless `branches` is false), oldest first."""
    lines = StepLog.objects.filter(run=run, step_id=step_id)
    if branch is not None or not branches:
        lines = lines.filter(branch_index=branch)
    return list(reversed(lines.order_by("-id")[:LOG_LINES_SHOWN]))


def all_lines_url(run_id, step_id: str, branch: int | None = None) -> str:
    query = {"step": step_id, **({"branch": branch} if branch is not None else {})}
    return reverse("run-logs", args=[run_id]) + "?" + urlencode(query)


def extra_text(line: StepLog) -> str:
    return json.dumps(line.extra, ensure_ascii=False, sort_keys=True) if line.extra else ""


def panel_context(run: Run, row: StepRun) -> dict:
    """What the step panel's log section shows (step_panel.html) and where the live page goes on from."""
    lines = latest_lines(run, row.step_id)
    return {
        "log_lines": [(line, line.get_level_display(), extra_text(line)) for line in lines],
        "log_last": lines[-1].pk if lines else 0,
        "log_all": all_lines_url(run.pk, row.step_id),
        "log_shown": LOG_LINES_SHOWN,
    }


def step_run_log(row: StepRun) -> str:
    """The log of one step run (a branch's own, or a step's without its branches), for its admin page."""
    lines = latest_lines(row.run, row.step_id, branch=row.branch_index, branches=False)
    if not lines:
        return "-"
    table = html_table(
        ["at", "level", "attempt", "message", "extra"],
        ((line.logged_at.isoformat(), line.get_level_display(), line.attempt, line.message, extra_text(line))
         for line in lines),
        table_id="cf-step-log",
    )  # fmt: skip
    link = all_lines_url(row.run_id, row.step_id, row.branch_index)
    return format_html('<p>the latest {} lines: <a href="{}">all of them (REST)</a></p>{}', len(lines), link, table)
