from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "shop.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Celery's signals are process-global: connecting here (Django is set up in every Celery process)
        # gives each worker its heartbeat file, metrics endpoint and task timings without touching worker/.
        from . import worker

        worker.connect_signals()
