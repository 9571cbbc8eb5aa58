"""`python manage.py purge_runs --older-than DAYS [--workflow SLUG] [--dry-run]`."""

from django.core.management.base import BaseCommand, CommandError

from executions import retention
from workflows.models import Workflow


def days(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"--older-than takes a whole number of days, not {value!r}") from None
    if number < 0:
        raise CommandError(f"--older-than takes 0 or more days, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Delete finished runs (with their steps, events, approvals and decisions) that finished more than "
        "DAYS days ago; unfinished runs are never deleted. Prints what it deletes, per workflow."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", required=True, metavar="DAYS", help="0 or more; 0: every finished run")
        parser.add_argument("--workflow", metavar="SLUG", help="only this workflow's runs")
        parser.add_argument("--dry-run", action="store_true", help="print what would be deleted; delete nothing")

    def handle(self, *args, older_than: str, workflow: str | None, dry_run: bool, **options) -> None:
        older = days(older_than)
        chosen = None
        if workflow is not None:
            chosen = Workflow.objects.filter(slug=workflow).first()
            if chosen is None:
                raise CommandError(f"no workflow with slug {workflow!r}")
        counts = retention.purge_runs(older_than_days=older, workflow=chosen, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for slug, count in sorted(counts.items()):
            if count:
                self.stdout.write(f"{slug}: {verb} {count} run{'s' if count != 1 else ''}")
        total = sum(counts.values())
        self.stdout.write(f"{verb} {total} finished run{'s' if total != 1 else ''} older than {older} days")
