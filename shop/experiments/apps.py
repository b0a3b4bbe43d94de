from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "shop.experiments"
    label = "experiments"
    verbose_name = "Experiments"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (drops the in-process cache of the running experiment on edits)
