from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "shop.catalog"
    label = "catalog"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from .cards import cards_forget_on_change
        from .models import Brand, Category, Product

        # a card shows the product's name, price, stock, brand and links: an edit shows on the next page
        for model in (Product, Brand, Category):
            for signal, what in ((post_save, "save"), (post_delete, "delete")):
                signal.connect(cards_forget_on_change, sender=model, dispatch_uid=f"cards:{model.__name__}:{what}")
