from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ShopConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'shop'

    def ready(self) -> None:
        from shop.models import Package, Product, Supplier, SupplierVolumePrice

        # The storefront's catalog reading (shop.selectors.catalog_current) is dropped on any
        # save or delete of what it holds, whichever door made it (admin, services, shell);
        # other processes see the change within CATALOG_CACHE_SECONDS.
        for model in (Product, Package, Supplier, SupplierVolumePrice):
            post_save.connect(_catalog_changed, sender=model, dispatch_uid=f"catalog-{model.__name__}-save")
            post_delete.connect(_catalog_changed, sender=model,
                                dispatch_uid=f"catalog-{model.__name__}-delete")


def _catalog_changed(**kwargs: object) -> None:
    from shop.selectors import catalog_forget

    catalog_forget()
