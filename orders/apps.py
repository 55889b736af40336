from django.apps import AppConfig
from django.db.models.signals import post_migrate


class OrdersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "orders"

    def ready(self) -> None:
        from orders import checks  # noqa: F401  (registers the system checks)
        from orders.schedules import schedules_ensure

        post_migrate.connect(schedules_ensure, sender=self)
