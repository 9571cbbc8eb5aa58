"""App config for workflow definitions: loads the built-in actions and the user's action modules."""

from django.apps import AppConfig
from django.conf import settings


class WorkflowsConfig(AppConfig):
    name = "workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from workflows import builtin_actions  # noqa: F401 (registers echo, sleep, http)
        from workflows.actions import import_action_modules

        import_action_modules(settings.WORKFLOWS_ACTION_MODULES)
