"""Resolving an escalation needs approvals.resolve_escalation; escalations that name no one go to its
holders (`any_resolver`), no longer to every staff user (`staff`)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="approval",
            options={
                "ordering": ["-created_at"],
                "permissions": [("resolve_escalation", "Can resolve escalations (retry, skip or fail a failed step)")],
            },
        ),
        migrations.RenameField(model_name="approval", old_name="staff", new_name="any_resolver"),
        migrations.AlterField(
            model_name="approval",
            name="any_resolver",
            field=models.BooleanField(
                default=False,
                help_text="An escalation that names no one: everyone with approvals.resolve_escalation may resolve it.",
            ),
        ),
    ]
