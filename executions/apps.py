"""App config for the runtime."""

from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from executions import broadcast, concurrency, events, gauges, schedules, signals, transitions
        from workflows.sections import register_section

        signals.connect()
        events.subscribe(broadcast.publish)
        transitions.on_run_finish(schedules.release_buffered)
        transitions.on_run_finish(concurrency.release)
        register_section("schedules", schedules.schedules_load)
        for reader in (gauges.runs_active, gauges.schedule_lag, gauges.schedule_fires, gauges.fold_lag):
            gauges.register_gauge(reader)
        gauges.register_gauge(gauges.queue_depth, sampled=True)  # the metrics page draws its history
