from django.apps import AppConfig


class RecsConfig(AppConfig):
    name = "shop.recs"
    label = "recs"
    verbose_name = "Recommendations"
