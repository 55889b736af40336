from django.urls import path

from shop import views

app_name = "shop"
urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("recipient/", views.recipient, name="recipient"),
    path("confirm/", views.confirm, name="confirm"),
    path("orders/find/", views.order_find, name="order_find"),
    path("orders/<uuid:public_id>/pay/", views.order_pay, name="order_pay"),
    path("orders/<uuid:public_id>/", views.order_status, name="order_status"),
    path("orders/<uuid:public_id>/status.json", views.order_status_json, name="order_status_json"),
    path("terms/", views.terms, name="terms"),
]
