from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PartnersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "partners"
    verbose_name = _("Partner API")

    def ready(self) -> None:
        # Registers the API-key scheme with drf-spectacular, and our system checks.
        from partners import checks  # noqa: F401
        from partners.api import schema  # noqa: F401
