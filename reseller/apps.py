"""App configs of the project package: the admin with our site, and `reseller` for its commands."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ResellerAdminConfig(admin_apps.AdminConfig):
    """Django's admin whose default site (`admin.site`) asks staff with an authenticator for its code."""

    default = False  # picked by its dotted path in INSTALLED_APPS, not as reseller's own config
    default_site = "reseller.admin_site.ResellerAdminSite"


class ResellerConfig(AppConfig):
    default = True
    name = "reseller"
    verbose_name = "Reseller"
