from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "shop.events"
    label = "events"
