"""/api/v1/: the paths our own supplier client calls, without trailing slashes (a POST cannot
follow a redirect)."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularSwaggerSplitView

from partners.api import views

app_name = "api"

urlpatterns = [
    path("products", views.ProductsView.as_view(), name="products"),
    path("validate-user", views.ValidateUserView.as_view(), name="validate-user"),
    path("topup", views.TopupView.as_view(), name="topup"),
    path("orders", views.OrdersView.as_view(), name="orders"),
    path("orders/<str:order_id>", views.OrderView.as_view(), name="order"),
    path("balance", views.BalanceView.as_view(), name="balance"),
    path("ledger", views.LedgerView.as_view(), name="ledger"),
    path("schema/", views.SchemaView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(
        url_name="api:schema", template_name="partners/api_docs.html"), name="docs"),
    re_path(r"^.*$", views.not_found_view),
]
