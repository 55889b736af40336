from django.contrib import admin
from django.urls import include, path

from reseller.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("bot/", include("bots.urls")),
    path("api/v1/", include("partners.api.urls")),
    path("", include("orders.urls")),
    path("", include("shop.urls")),
]
