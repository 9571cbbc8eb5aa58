"""PostgreSQL only: the index the metrics fold reads events by, built CONCURRENTLY, so the transitions
that append events keep running while a large event table is indexed."""

from django.db import migrations


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS runevent_txid ON executions_runevent (txid, id)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS runevent_txid")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("executions", "0006_metrics")]

    operations = [migrations.RunPython(create, drop)]
