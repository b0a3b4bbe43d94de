from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "shop.events"
    label = "events"

    def ready(self) -> None:
        from . import signals  # noqa: F401
