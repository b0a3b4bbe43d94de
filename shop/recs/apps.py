from django.apps import AppConfig


class RecsConfig(AppConfig):
    name = "shop.recs"
    label = "recs"
    verbose_name = "Recommendations"

    def ready(self) -> None:
        from .rails import register_recommendation_placements

        register_recommendation_placements()
